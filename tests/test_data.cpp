// tests/test_data.cpp — the IDX reader on good and corrupt files, and the DataLoader.
#include <doctest/doctest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>

#include "core/file.h"
#include "idx_files.h"
#include "minidl.h"
#include "nn/data.h"
#include "nn/idx.h"
#include "temp_dir.h"

using namespace minidl;
using namespace minidl::nn;
using minidl::testing::TempDir;
using minidl::testing::idx_bytes;
using minidl::testing::write_bytes;
using minidl::testing::write_dataset;
using minidl::testing::write_gz;
namespace fs = std::filesystem;

TEST_CASE("IDX: good files, compressed or not") {
  TempDir dir;
  std::vector<uint8_t> data = {1, 2, 3, 4, 5, 6};
  write_gz(dir / "a.gz", idx_bytes({2, 3, 1}, data));
  IdxArray a = read_idx(dir / "a.gz", 3);
  CHECK(a.dims == std::vector<int64_t>{2, 3, 1});
  CHECK(a.data == data);
  write_bytes(dir / "b", idx_bytes({6}, data));
  CHECK(read_idx(dir / "b", 1).data == data);
}

TEST_CASE("IDX: corrupt files give errors naming the file and the problem") {
  TempDir dir;
  std::vector<uint8_t> data(12, 7);
  std::vector<uint8_t> good = idx_bytes({3, 2, 2}, data);

  auto bad_magic = good;
  bad_magic[2] = 0x0D;  // float data
  write_gz(dir / "magic.gz", bad_magic);
  CHECK_THROWS_WITH_AS(read_idx(dir / "magic.gz", 3), doctest::Contains("magic.gz: wrong IDX magic 00 00 0d 03"), Error);

  write_gz(dir / "ndim.gz", good);
  CHECK_THROWS_WITH_AS(read_idx(dir / "ndim.gz", 1), doctest::Contains("expected 00 00 08 01"), Error);

  auto short_data = good;
  short_data.pop_back();
  write_gz(dir / "short.gz", short_data);
  CHECK_THROWS_WITH_AS(read_idx(dir / "short.gz", 3),
                       doctest::Contains("dims [3, 2, 2] need 12 bytes of data but the file has 11 after the 16-byte header"),
                       Error);

  // A header claiming 2^32-1 images must not allocate anything like that.
  auto huge = idx_bytes({0xFFFFFFFFu, 28, 28}, data);
  write_gz(dir / "huge.gz", huge);
  CHECK_THROWS_WITH_AS(read_idx(dir / "huge.gz", 3), doctest::Contains("need more bytes than the file holds"), Error);

  // A gzip stream cut in half.
  write_gz(dir / "whole.gz", idx_bytes({3, 2, 2}, std::vector<uint8_t>(5000, 9)));
  std::vector<uint8_t> gz = read_file(dir / "whole.gz");
  gz.resize(gz.size() / 2);
  write_bytes(dir / "cut.gz", gz);
  CHECK_THROWS_WITH_AS(read_idx(dir / "cut.gz", 3), doctest::Contains("cut.gz: truncated gzip"), Error);

  // Corrupted bytes inside the deflate stream.
  write_gz(dir / "flip.gz", good);
  std::vector<uint8_t> gz2 = read_file(dir / "flip.gz");
  for (size_t i = 12; i < gz2.size() - 8; ++i) gz2[i] ^= 0x5A;
  write_bytes(dir / "flip.gz", gz2);
  CHECK_THROWS_AS(read_idx(dir / "flip.gz", 3), Error);

  write_bytes(dir / "tiny", {0, 0});
  CHECK_THROWS_WITH_AS(read_idx(dir / "tiny", 1), doctest::Contains("too short for an IDX header"), Error);
  CHECK_THROWS_WITH_AS(read_idx(dir / "nope.gz", 1), doctest::Contains("nope.gz: no such file"), Error);
}

TEST_CASE("read_file: every byte of a file, and a clear error for what is not one") {
  TempDir dir;
  std::vector<uint8_t> bytes(200003);  // not a multiple of any buffer size
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(i * 7 + i / 251);
  write_bytes(dir / "data", bytes);
  CHECK(read_file(dir / "data") == bytes);
  write_bytes(dir / "empty", {});
  CHECK(read_file(dir / "empty").empty());
  CHECK_THROWS_WITH_AS(read_file(dir / "missing"), doctest::Contains("missing: no such file or cannot open it"), Error);
  fs::create_directory(dir / "folder");
  CHECK_THROWS_WITH_AS(read_file(dir / "folder"), doctest::Contains("folder: reading failed after 0 bytes"), Error);
}

TEST_CASE("datasets: counts must agree, labels must be classes, a missing set names the package") {
  TempDir dir;
  write_dataset(dir, "train", 30);
  ImageDataset ds = load_mnist_format(dir.path.string(), "train");
  CHECK(ds.size == 30);
  CHECK(ds.rows == 4);
  CHECK(ds.labels[13] == 3);

  write_gz(dir / "train-labels-idx1-ubyte.gz", idx_bytes({29}, std::vector<uint8_t>(29, 1)));
  CHECK_THROWS_WITH_AS(load_mnist_format(dir.path.string(), "train"), doctest::Contains("holds 30 images but"), Error);
  write_gz(dir / "train-labels-idx1-ubyte.gz", idx_bytes({30}, std::vector<uint8_t>(30, 12)));
  CHECK_THROWS_WITH_AS(load_mnist_format(dir.path.string(), "train"), doctest::Contains("label 12 at index 0"), Error);
  CHECK_THROWS_WITH_AS(load_mnist_format(dir.path.string(), "t10k"), doctest::Contains("dataset-fashion-mnist"), Error);
  CHECK_THROWS_WITH_AS(load_mnist_format("/nonexistent/dir", "train"), doctest::Contains("--data"), Error);
}

TEST_CASE("DataLoader: each sample once per epoch, deterministic per seed, different per epoch") {
  TempDir dir;
  write_dataset(dir, "train", 53);
  ImageDataset ds = load_mnist_format(dir.path.string(), "train");
  auto epoch_order = [&](uint64_t seed, int64_t epoch, LoaderOptions o = {}) {
    o.batch_size = 8;
    o.seed = seed;
    o.mean = 0;
    o.std = 1;
    DataLoader loader(ds, o);
    loader.start_epoch(epoch);
    std::vector<int64_t> ids;
    int64_t batches = 0;
    while (auto b = loader.next()) {
      ++batches;
      CHECK(b->images.shape()[1] == 1);
      std::vector<float> px = b->images.to_vector<float>();
      std::vector<int64_t> lab = b->labels.to_vector<int64_t>();
      for (int64_t i = 0; i < b->labels.numel(); ++i) {
        // pixel 0 of image k is (16 k) % 251 / 255: recover k
        int64_t first = static_cast<int64_t>(std::lround(px[i * 16] * 255));
        int64_t k = -1;
        for (int64_t c = 0; c < ds.size; ++c)
          if ((c * 16) % 251 == first && (c * 16 + 1) % 251 == std::lround(px[i * 16 + 1] * 255)) k = c;
        REQUIRE(k >= 0);
        CHECK(lab[i] == k % 10);
        ids.push_back(k);
      }
    }
    CHECK(batches == loader.batches_per_epoch());
    return ids;
  };
  std::vector<int64_t> e0 = epoch_order(5, 0);
  CHECK(e0.size() == 53);
  CHECK(std::set<int64_t>(e0.begin(), e0.end()).size() == 53);  // each sample exactly once
  CHECK(epoch_order(5, 0) == e0);                                 // same seed and epoch: same order
  CHECK(epoch_order(5, 1) != e0);                                 // next epoch: reshuffled
  CHECK(epoch_order(6, 0) != e0);                                 // other seed: other order
  std::vector<int64_t> plain = epoch_order(5, 0, {.shuffle = false});
  for (int64_t i = 0; i < 53; ++i) CHECK(plain[i] == i);
  CHECK(epoch_order(5, 0, {.drop_last = true}).size() == 48);
}

TEST_CASE("DataLoader: normalisation and seeded augmentation") {
  TempDir dir;
  write_dataset(dir, "train", 20);
  ImageDataset ds = load_mnist_format(dir.path.string(), "train");
  DataLoader plain(ds, {.batch_size = 20, .shuffle = false, .mean = 0.5f, .std = 0.25f});
  plain.start_epoch(0);
  Batch b = *plain.next();
  // image 0, pixel 5: value 5 -> (5/255 - 0.5) / 0.25
  CHECK(b.images.to_vector<float>()[5] == doctest::Approx((5.0 / 255 - 0.5) / 0.25));
  CHECK_FALSE(plain.next().has_value());

  LoaderOptions aug{.batch_size = 20, .shuffle = false, .seed = 1, .crop_padding = 2, .hflip = true};
  DataLoader a1(ds, aug), a2(ds, aug);
  a1.start_epoch(0);
  a2.start_epoch(0);
  Tensor x1 = a1.next()->images, x2 = a2.next()->images;
  CHECK(x1.shape() == Shape{20, 1, 4, 4});
  CHECK(x1.to_vector<float>() == x2.to_vector<float>());
  // Every augmented image is its original under one crop offset (dy, dx) in
  // [-2, 2]² and an optional horizontal flip, the pixels outside filled with the
  // normalised zero: search the 50 transforms for one that matches exactly.
  DataLoader no_aug(ds, {.batch_size = 20, .shuffle = false});
  no_aug.start_epoch(0);
  std::vector<float> orig = no_aug.next()->images.to_vector<float>(), got = x1.to_vector<float>();
  const float background = -kFashionMnistMean / kFashionMnistStd;  // a zero pixel, normalised as by default
  int shifted = 0, flipped = 0, untouched = 0;
  for (int i = 0; i < 20; ++i) {
    bool found = false;
    for (int dy = -2; dy <= 2 && !found; ++dy)
      for (int dx = -2; dx <= 2 && !found; ++dx)
        for (int flip = 0; flip < 2 && !found; ++flip) {
          bool match = true;
          for (int r = 0; r < 4 && match; ++r)
            for (int c = 0; c < 4 && match; ++c) {
              const int sr = r + dy, sc = (flip ? 3 - c : c) + dx;
              const bool inside = sr >= 0 && sr < 4 && sc >= 0 && sc < 4;
              const float want = inside ? orig[i * 16 + sr * 4 + sc] : background;
              match = got[i * 16 + r * 4 + c] == doctest::Approx(want);
            }
          if (match) {
            found = true;
            shifted += dy != 0 || dx != 0;
            flipped += flip;
            untouched += dy == 0 && dx == 0 && !flip;
          }
        }
    CAPTURE(i);
    CHECK(found);
  }
  // With 20 draws of 50 transforms, both kinds occur and most images change.
  CHECK(shifted > 0);
  CHECK(flipped > 0);
  CHECK(untouched < 10);
  // restarting an epoch mid-way is fine
  a1.start_epoch(1);
  CHECK(a1.next().has_value());
}
