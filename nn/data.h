// nn/data.h — Fashion-MNIST (or any MNIST-format set), and a DataLoader that
// shuffles, batches, normalises and augments on a background thread.
#pragma once

#include <array>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "core/tensor.h"

namespace minidl::nn {

// Where Debian's dataset-fashion-mnist package puts the files.
inline constexpr const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";
inline constexpr std::array<const char*, 10> kFashionMnistClasses = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};
// Every MNIST-format data set minidl reads has these ten classes: labels 0-9 (checked).
inline constexpr int64_t kClasses = 10;
// Mean and standard deviation of the Fashion-MNIST training pixels (scaled to [0, 1]).
inline constexpr float kFashionMnistMean = 0.2860f, kFashionMnistStd = 0.3530f;

// Images (N, rows, cols) as bytes and labels (N), straight from the IDX files.
struct ImageDataset {
  int64_t size = 0, rows = 0, cols = 0;
  std::vector<uint8_t> pixels;  // N · rows · cols
  std::vector<uint8_t> labels;  // N, each < 10 (checked)
  ImageDataset subset(int64_t first_n) const;
};

// split = "train" or "t10k". Looks for {split}-images-idx3-ubyte[.gz] and
// {split}-labels-idx1-ubyte[.gz] in dir; a missing directory or file is an
// error naming the Debian package and --data.
ImageDataset load_mnist_format(const std::string& dir, const std::string& split);

struct Batch {
  Tensor images;  // (B, 1, rows, cols) f32, normalised
  Tensor labels;  // (B) int64
  Tensor indices;  // (B) int64: each sample's position in the dataset (to look up what was computed per sample once, like a teacher's logits)
};

struct LoaderOptions {
  int64_t batch_size = 128;
  bool shuffle = true;
  bool drop_last = false;
  uint64_t seed = 0;
  float mean = kFashionMnistMean, std = kFashionMnistStd;
  int64_t crop_padding = 0;  // > 0: random crop after zero-padding by this many pixels
  bool hflip = false;        // random horizontal flip with probability 1/2
  int64_t prefetch = 2;      // batches prepared ahead on the background thread
};

// Iterates a dataset in batches, epoch by epoch. The order and the augmentation of
// epoch e depend only on (seed, e): the same seed gives the same batches, and each
// sample is seen exactly once per epoch. A background thread prepares the next
// `prefetch` batches while the training loop works on the current one.
class DataLoader {
 public:
  DataLoader(const ImageDataset& data, LoaderOptions options);
  ~DataLoader();
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  int64_t batches_per_epoch() const;
  // Starts epoch e (stopping any epoch in flight); then call next() until it returns nullopt.
  void start_epoch(int64_t epoch);
  std::optional<Batch> next();
  const LoaderOptions& options() const { return options_; }

 private:
  Batch make_batch(const std::vector<int64_t>& order, int64_t first, int64_t count, uint64_t epoch_seed) const;
  void stop();

  const ImageDataset& data_;
  LoaderOptions options_;
  std::thread worker_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Batch> ready_;
  int64_t produced_ = 0, consumed_ = 0, total_ = 0;
  bool stop_requested_ = false;
  std::optional<std::string> worker_error_;
};

}  // namespace minidl::nn
