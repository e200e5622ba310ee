// minidl.h — everything a user of minidl needs, in one include: tensors and
// autograd, the ops, and nn/ (layers, models, optimizers, data, checkpoints, the
// training loop).
#pragma once

#include "core/autograd.h"
#include "core/check.h"
#include "core/generator.h"
#include "core/tensor.h"
#include "cuda/runtime.h"
#include "ops/conv.h"
#include "ops/elementwise.h"
#include "ops/factory.h"
#include "ops/index.h"
#include "ops/loss.h"
#include "ops/matmul.h"
#include "ops/norm.h"
#include "ops/pool.h"
#include "ops/reduce.h"
#include "ops/softmax.h"
#include "ops/optim.h"
#include "nn/data.h"
#include "nn/layers.h"
#include "nn/models.h"
#include "nn/module.h"
#include "nn/optim.h"
#include "nn/safetensors.h"
#include "nn/spec.h"
#include "nn/train.h"
