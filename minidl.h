// minidl.h — everything a user of minidl needs, in one include: tensors and
// autograd, the ops, and nn/ (layers, models, optimizers, data, checkpoints, the
// training loop), and compress/.
#pragma once

// In layer order, core to compile/ (not sorted: clang-format leaves them be).
// clang-format off
#include "core/autograd.h"
#include "core/check.h"
#include "core/generator.h"
#include "core/parse.h"
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
#include "ops/quant.h"
#include "nn/data.h"
#include "nn/layers.h"
#include "nn/models.h"
#include "nn/module.h"
#include "nn/optim.h"
#include "nn/safetensors.h"
#include "nn/spec.h"
#include "nn/train.h"
#include "compress/prune.h"
#include "compress/sparse.h"
#include "compress/sparse_layers.h"
#include "compress/structured.h"
#include "compress/report.h"
#include "compress/sensitivity.h"
#include "compress/quantize.h"
#include "compile/plan.h"
// clang-format on
