// compress/structured.h — structured pruning: remove whole output neurons and conv
// filters, and physically shrink the model.
//
//   auto report = compress::prune_channels(*model, {"0", "3", "7"}, Amount::fraction(0.5), Criterion::l1);
//
// Unstructured pruning (prune.h) leaves a layer its shape and needs sparse
// kernels to run faster; this makes the layer smaller, so the plain dense GEMM
// does less work. Removing output c of a layer changes everything downstream
// that reads it, up to the next Linear or Conv2d:
//
//   Conv2d(1, 32) -> ReLU -> MaxPool2d -> Conv2d(32, 64)        Linear(784, 512) -> ReLU -> Linear(512, 256)
//          ^ 16 filters     (per channel: nothing to change)  ^ 16 input channels        ^ 256 outputs      ^ 256 inputs
//
// BatchNorm loses the channel's statistics and affine pair; Flatten maps channel
// c to the C·H·W columns c·H·W .. (c+1)·H·W − 1 of the next Linear.
//
// The masked model this matches is PyTorch's (prune.ln_structured): the removed
// rows of the weight are zero and everything else is kept, so a removed channel
// still outputs a constant — its bias, through BatchNorm and the activation.
// That constant's contribution is folded into the next layer's bias, which is
// exact for a Linear and for a Conv2d without padding. A padded Conv2d sees the
// constant channel zero-padded at its borders, which no per-channel bias can
// reproduce: there the fold is exact in the interior only, and the result says
// so (`exact` false) whenever the constant is not zero.
#pragma once

#include <string>
#include <vector>

#include "compress/prune.h"
#include "core/generator.h"
#include "nn/module.h"

namespace minidl::compress {

// How output channels are ranked: by the L1 or L2 norm of their weights (the
// smallest go), or at random.
enum class Criterion { l1, l2, random };
Criterion parse_criterion(const std::string& name);  // "l1", "l2", "random"

struct ChannelPruning {
  std::string layer;            // "3"
  int64_t before = 0, after = 0;
  std::vector<int64_t> kept;    // the surviving output channels, ascending (old indices)
  std::string consumer;         // the layer whose inputs shrank with it ("7")
  bool exact = true;            // the fold reproduces the masked model exactly
  std::string note;             // why not, when it is not
};

// Every layer prune_channels can take, in order: the model's Linear/Conv2d
// children whose outputs it can follow (all but the classifier), and the conv1
// of each residual block child.
std::vector<std::string> prunable_layers(nn::Module& model);

// Removes `amount` of the outputs of each listed layer (children of a
// Sequential by name, or "<block>.conv1" of a residual block child), ranked by `criterion` (random uses gen), and
// shrinks their consumers. Refuses, changing nothing: a name that is not a
// Linear or Conv2d child, the last such layer (its outputs are the classes),
// an amount that would remove every output, a consumer chain it cannot follow
// (outputs that reach a residual add: those channels are tied to the other
// branch, and pruning them as one group is not done yet).
// The model should be in eval mode: BatchNorm folds use its running statistics.
std::vector<ChannelPruning> prune_channels(nn::Module& model, const std::vector<std::string>& layers, Amount amount,
                                           Criterion criterion, Generator* gen = nullptr);

// prune_channels' refusals alone, changing nothing: a tool calls it before it
// spends minutes evaluating the model, so a request it cannot do fails at once.
void check_channel_pruning(nn::Module& model, const std::vector<std::string>& layers, Amount amount);

// Residual groups: the channels a chain of residual blocks ties together. In
// a ResNet trunk the stem's outputs, every identity block's conv2 outputs and
// the block inputs are added channel by channel, so channel c can only go from
// all of them at once: one group per stage, produced by the stem conv (or a
// downsampling block's conv2 and shortcut conv) and by each identity block's
// conv2, normalised by their BatchNorms, and read by the next blocks' conv1
// and shortcut conv, or the classifier's inputs (after global pooling).
//
// Each group loses `amount` of its channels, ranked by the summed norms of all
// its producers' rows. Removal here is exact: the masked reference zeroes the
// removed channel everywhere (producer rows *and* its BatchNorms' weight and
// bias, as Torch-Pruning removes it), so there is no constant left to fold.
// The model must be a Sequential of Conv2d, BatchNorm, ReLU, ResidualBlock,
// pooling, Flatten and Linear children (the zoo's resnet-s); anything else is
// refused naming it. Report: one entry per group, `layer` naming its producers
// and `consumer` its readers.
std::vector<ChannelPruning> prune_residual_groups(nn::Module& model, Amount amount, Criterion criterion,
                                                  Generator* gen = nullptr);

}  // namespace minidl::compress
