#include "nn/data.h"

#include <filesystem>
#include <numeric>

#include "core/check.h"
#include "core/generator.h"
#include "nn/idx.h"
#include "ops/factory.h"

namespace minidl::nn {

namespace {
std::string find_file(const std::string& dir, const std::string& stem) {
  for (const char* suffix : {".gz", ""}) {
    std::string path = dir + "/" + stem + suffix;
    if (std::filesystem::exists(path)) return path;
  }
  fail("{}: no {}[.gz] here. Fashion-MNIST comes from Debian's dataset-fashion-mnist package "
       "(apt-get install dataset-fashion-mnist, files in {}); point --data at another directory of MNIST-format files",
       dir, stem, kFashionMnistDir);
}
}  // namespace

ImageDataset ImageDataset::subset(int64_t n) const {
  MINIDL_CHECK(n >= 0, "subset: negative size {}", n);
  ImageDataset out = *this;
  out.size = std::min(n, size);
  out.pixels.resize(static_cast<size_t>(out.size * rows * cols));
  out.labels.resize(static_cast<size_t>(out.size));
  return out;
}

ImageDataset load_mnist_format(const std::string& dir, const std::string& split) {
  MINIDL_CHECK(std::filesystem::is_directory(dir),
               "data directory {} does not exist. Fashion-MNIST comes from Debian's dataset-fashion-mnist package "
               "(apt-get install dataset-fashion-mnist); use --data DIR for another directory of MNIST-format files",
               dir);
  std::string images_path = find_file(dir, split + "-images-idx3-ubyte");
  std::string labels_path = find_file(dir, split + "-labels-idx1-ubyte");
  IdxArray images = read_idx(images_path, 3);
  IdxArray labels = read_idx(labels_path, 1);
  MINIDL_CHECK(images.dims[0] == labels.dims[0], "{} holds {} images but {} holds {} labels", images_path,
               images.dims[0], labels_path, labels.dims[0]);
  for (size_t i = 0; i < labels.data.size(); ++i)
    MINIDL_CHECK(labels.data[i] < kClasses, "{}: label {} at index {} (byte offset {}) is not a class 0-9", labels_path,
                 labels.data[i], i, 8 + i);
  ImageDataset ds;
  ds.size = images.dims[0];
  ds.rows = images.dims[1];
  ds.cols = images.dims[2];
  ds.pixels = std::move(images.data);
  ds.labels = std::move(labels.data);
  return ds;
}

// ---------------------------------------------------------------- DataLoader

DataLoader::DataLoader(const ImageDataset& data, LoaderOptions options) : data_(data), options_(options) {
  MINIDL_CHECK(options.batch_size > 0, "DataLoader: batch size must be positive, got {}", options.batch_size);
  MINIDL_CHECK(options.std > 0, "DataLoader: std must be positive, got {}", options.std);
  MINIDL_CHECK(options.prefetch >= 1, "DataLoader: prefetch must be at least 1");
}

DataLoader::~DataLoader() { stop(); }

int64_t DataLoader::batches_per_epoch() const {
  const int64_t b = options_.batch_size;
  return options_.drop_last ? data_.size / b : (data_.size + b - 1) / b;
}

void DataLoader::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_requested_ = true;
  }
  cv_.notify_all();
  if (worker_.joinable()) worker_.join();
}

void DataLoader::start_epoch(int64_t epoch) {
  stop();
  ready_.clear();
  produced_ = consumed_ = 0;
  total_ = batches_per_epoch();
  stop_requested_ = false;
  worker_error_.reset();

  // The epoch's order: a Fisher–Yates shuffle from a generator seeded by (seed, epoch).
  const uint64_t epoch_seed = options_.seed * 0x9e3779b97f4a7c15ull + static_cast<uint64_t>(epoch) + 1;
  std::vector<int64_t> order(static_cast<size_t>(data_.size));
  std::iota(order.begin(), order.end(), 0);
  if (options_.shuffle) {
    Generator gen(epoch_seed);
    for (int64_t i = data_.size - 1; i > 0; --i) std::swap(order[i], order[gen.below(static_cast<uint64_t>(i) + 1)]);
  }

  worker_ = std::thread([this, order = std::move(order), epoch_seed] {
    for (int64_t b = 0; b < total_; ++b) {
      {
        std::unique_lock<std::mutex> lock(mutex_);
        cv_.wait(lock, [&] { return stop_requested_ || static_cast<int64_t>(ready_.size()) < options_.prefetch; });
        if (stop_requested_) return;
      }
      const int64_t first = b * options_.batch_size;
      const int64_t count = std::min(options_.batch_size, data_.size - first);
      Batch batch;
      try {
        batch = make_batch(order, first, count, epoch_seed + static_cast<uint64_t>(b) * 0x632be59bd9b4e019ull);
      } catch (const std::exception& e) {
        std::lock_guard<std::mutex> lock(mutex_);
        worker_error_ = e.what();
        cv_.notify_all();
        return;
      }
      {
        std::lock_guard<std::mutex> lock(mutex_);
        ready_.push_back(std::move(batch));
        ++produced_;
      }
      cv_.notify_all();
    }
  });
}

std::optional<Batch> DataLoader::next() {
  std::unique_lock<std::mutex> lock(mutex_);
  if (consumed_ >= total_) return std::nullopt;
  cv_.wait(lock, [&] { return !ready_.empty() || worker_error_.has_value(); });
  if (ready_.empty()) throw Error("DataLoader: preparing a batch failed: " + *worker_error_);
  Batch b = std::move(ready_.front());
  ready_.pop_front();
  ++consumed_;
  lock.unlock();
  cv_.notify_all();
  return b;
}

// One batch: gather, augment (crop with padding, flip), scale to [0, 1], normalise.
// The augmentation draws from its own generator, seeded per batch, so the result
// does not depend on timing or on how far the worker has run ahead.
Batch DataLoader::make_batch(const std::vector<int64_t>& order, int64_t first, int64_t count,
                             uint64_t batch_seed) const {
  const int64_t R = data_.rows, C = data_.cols, pad = options_.crop_padding;
  Tensor images = empty({count, 1, R, C});
  Tensor labels = empty({count}, {.dtype = DType::int64});
  Tensor indices = empty({count}, {.dtype = DType::int64});
  float* out = images.data_ptr<float>();
  int64_t* lab = labels.data_ptr<int64_t>();
  int64_t* where = indices.data_ptr<int64_t>();
  Generator gen(batch_seed);
  const float scale = 1.0f / (255.0f * options_.std), shift = -options_.mean / options_.std;
  const float background = shift;  // a zero pixel, normalised
  for (int64_t i = 0; i < count; ++i) {
    const int64_t idx = order[static_cast<size_t>(first + i)];
    const uint8_t* src = data_.pixels.data() + idx * R * C;
    lab[i] = data_.labels[static_cast<size_t>(idx)];
    where[i] = idx;
    int64_t dy = 0, dx = 0;
    if (pad > 0) {
      dy = static_cast<int64_t>(gen.below(static_cast<uint64_t>(2 * pad + 1))) - pad;
      dx = static_cast<int64_t>(gen.below(static_cast<uint64_t>(2 * pad + 1))) - pad;
    }
    const bool flip = options_.hflip && (gen.next_u64() & 1);
    float* dst = out + i * R * C;
    for (int64_t r = 0; r < R; ++r)
      for (int64_t c = 0; c < C; ++c) {
        int64_t sr = r + dy, sc = (flip ? C - 1 - c : c) + dx;
        bool inside = sr >= 0 && sr < R && sc >= 0 && sc < C;
        dst[r * C + c] = inside ? static_cast<float>(src[sr * C + sc]) * scale + shift : background;
      }
  }
  return {images, labels, indices};
}

}  // namespace minidl::nn
