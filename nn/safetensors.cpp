#include "nn/safetensors.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <nlohmann/json.hpp>
#include <vector>

#include "core/autograd.h"
#include "core/check.h"
#include "core/file.h"
#include "ops/factory.h"

namespace minidl::nn {

static_assert(std::endian::native == std::endian::little, "safetensors I/O assumes a little-endian host");

namespace {

constexpr uint64_t kMaxHeader = 100'000'000;  // as the reference implementation

const char* st_dtype(DType t) {
  switch (t) {
    case DType::f32: return "F32";
    case DType::f64: return "F64";
    case DType::bf16: return "BF16";
    case DType::int8: return "I8";
    case DType::int32: return "I32";
    case DType::int64: return "I64";
    case DType::boolean: return "BOOL";
  }
  return "?";
}

std::optional<DType> from_st_dtype(const std::string& s) {
  for (DType t : kAllDTypes)
    if (s == st_dtype(t)) return t;
  return std::nullopt;
}

}  // namespace

void save_safetensors(const std::string& path, const StateDict& tensors, const Metadata& metadata) {
  NoGradGuard no_grad;
  // Header: names in sorted order, data laid out back to back in that order.
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<Tensor> host;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    MINIDL_CHECK(name != "__metadata__", "save_safetensors: '__metadata__' is reserved and cannot name a tensor");
    MINIDL_CHECK(t.defined(), "save_safetensors: tensor '{}' is undefined (no data to write) in {}", name, path);
    Tensor h = t.detach().to(kCPU).contiguous();
    uint64_t nbytes = static_cast<uint64_t>(h.numel()) * element_size(h.dtype());
    header[name] = {{"dtype", st_dtype(h.dtype())}, {"shape", h.shape()}, {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
    host.push_back(h);
  }
  std::string json = header.dump();
  json.append((8 - json.size() % 8) % 8, ' ');  // pad so the data starts 8-byte aligned
  const uint64_t header_len = json.size();

  std::vector<std::pair<const void*, size_t>> chunks = {{&header_len, 8}, {json.data(), json.size()}};
  for (const Tensor& h : host) chunks.emplace_back(h.raw_data(), h.numel() * element_size(h.dtype()));
  write_file_atomically(path, chunks, "save_safetensors");
}

SafeTensors load_safetensors(const std::string& path) {
  const std::vector<uint8_t> bytes = read_file(path);
  return parse_safetensors(reinterpret_cast<const char*>(bytes.data()), bytes.size(), path);
}

SafeTensors parse_safetensors(const char* data, size_t n, const std::string& path) {
  const std::string_view bytes(data, n);
  const uint64_t size = bytes.size();
  MINIDL_CHECK(size >= 8, "{}: {} bytes is too short for a safetensors file (the header length alone takes 8)", path,
               size);
  uint64_t header_len = 0;
  std::memcpy(&header_len, bytes.data(), 8);
  MINIDL_CHECK(header_len <= kMaxHeader && header_len <= size - 8,
               "{}: header length {} (bytes 0-7) exceeds the file size {} or the 100 MB limit", path, header_len, size);
  MINIDL_CHECK(header_len >= 2 && bytes[8] == '{', "{}: the JSON header at byte 8 must start with '{{'", path);

  nlohmann::json header;
  try {
    header = nlohmann::json::parse(bytes.substr(8, header_len));
  } catch (const nlohmann::json::parse_error& e) {
    fail("{}: invalid JSON header at byte offset {}: {}", path, 8 + e.byte, e.what());
  } catch (const nlohmann::json::exception& e) {  // e.g. a number too large for a double (found by fuzzing)
    fail("{}: invalid JSON header (bytes 8 to {}): {}", path, 8 + header_len, e.what());
  }
  MINIDL_CHECK(header.is_object(), "{}: the header is not a JSON object", path);

  const uint64_t data_start = 8 + header_len, data_size = size - data_start;
  SafeTensors out;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      MINIDL_CHECK(entry.is_object(), "{}: __metadata__ must be an object of strings", path);
      for (const auto& [k, v] : entry.items()) {
        MINIDL_CHECK(v.is_string(), "{}: __metadata__ value '{}' is not a string", path, k);
        out.metadata[k] = v.get<std::string>();
      }
      continue;
    }
    MINIDL_CHECK(entry.is_object() && entry.contains("dtype") && entry.contains("shape") &&
                     entry.contains("data_offsets"),
                 "{}: tensor '{}' needs dtype, shape and data_offsets", path, name);
    const auto& jd = entry["dtype"];
    MINIDL_CHECK(jd.is_string(), "{}: tensor '{}': dtype is not a string", path, name);
    auto dtype = from_st_dtype(jd.get<std::string>());
    MINIDL_CHECK(dtype.has_value(), "{}: tensor '{}' has dtype {} which minidl does not support", path, name,
                 jd.dump());
    const auto& js = entry["shape"];
    MINIDL_CHECK(js.is_array(), "{}: tensor '{}': shape is not an array", path, name);
    Shape shape;
    uint64_t numel = 1;
    for (const auto& d : js) {
      MINIDL_CHECK(d.is_number_unsigned() || (d.is_number_integer() && d.get<int64_t>() >= 0),
                   "{}: tensor '{}': shape {} has a negative or non-integer size", path, name, js.dump());
      uint64_t s = d.get<uint64_t>();
      MINIDL_CHECK(s == 0 || numel <= data_size / s, "{}: tensor '{}': shape {} is larger than the file", path, name,
                   js.dump());
      numel *= s;
      shape.push_back(static_cast<int64_t>(s));
    }
    const auto& jo = entry["data_offsets"];
    MINIDL_CHECK(jo.is_array() && jo.size() == 2 && jo[0].is_number_unsigned() && jo[1].is_number_unsigned(),
                 "{}: tensor '{}': data_offsets must be two non-negative integers, got {}", path, name, jo.dump());
    const uint64_t begin = jo[0].get<uint64_t>(), end = jo[1].get<uint64_t>();
    MINIDL_CHECK(begin <= end && end <= data_size,
                 "{}: tensor '{}': data_offsets [{}, {}] fall outside the {} data bytes (file bytes {} to {})", path,
                 name, begin, end, data_size, data_start, size);
    MINIDL_CHECK(end - begin == numel * element_size(*dtype),
                 "{}: tensor '{}': shape {} of {} needs {} bytes but data_offsets [{}, {}] hold {} (file byte {})",
                 path, name, shape, *dtype, numel * element_size(*dtype), begin, end, end - begin, data_start + begin);
    Tensor t = empty(shape, {.dtype = *dtype});
    if (end > begin) std::memcpy(t.raw_data(), bytes.data() + data_start + begin, end - begin);
    if (*dtype == DType::boolean)
      for (uint64_t i = 0; i < numel; ++i)
        MINIDL_CHECK(static_cast<uint8_t*>(t.raw_data())[i] <= 1, "{}: tensor '{}': byte {} is not a bool (0 or 1)",
                     path, name, data_start + begin + i);
    out.tensors[name] = t;
    ranges.emplace_back(begin, end);
  }
  // The data must be covered exactly: no holes, no overlaps.
  std::sort(ranges.begin(), ranges.end());
  uint64_t expected = 0;
  for (const auto& [b, e] : ranges) {
    MINIDL_CHECK(b == expected, "{}: data bytes {} to {} are {} (file offset {})", path, std::min(b, expected),
                 std::max(b, expected), b > expected ? "not covered by any tensor" : "claimed by two tensors",
                 data_start + std::min(b, expected));
    expected = e;
  }
  MINIDL_CHECK(expected == data_size, "{}: {} trailing data bytes after the last tensor (file offset {})", path,
               data_size - expected, data_start + expected);
  return out;
}

}  // namespace minidl::nn
