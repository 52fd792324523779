#pragma once
// What a safetensors file says about one tensor: its name, element type, global shape and
// where its bytes lie in the data section.

#include <trident/io/dtype.hpp>

#include <cstdint>
#include <limits>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace trident::io {

using Shape = std::vector<std::int64_t>;

// The "__metadata__" entry: free-form string pairs (training step, layout, config, ...).
using Metadata = std::map<std::string, std::string>;

// A tensor to be laid out in a file: everything but its place.
struct TensorSpec {
  std::string name;
  DType dtype = DType::F32;
  Shape shape;
};

// A tensor as a file holds it. Offsets are bytes from the start of the data section,
// [data_begin, data_end), exactly as the header's "data_offsets" writes them.
struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  Shape shape;
  std::uint64_t data_begin = 0;
  std::uint64_t data_end = 0;

  std::uint64_t byte_size() const { return data_end - data_begin; }
};

// "[768, 2304]": how shapes appear in every message.
inline std::string format_shape(const Shape& shape) {
  std::ostringstream out;
  out << '[';
  for (std::size_t d = 0; d < shape.size(); ++d) out << (d ? ", " : "") << shape[d];
  out << ']';
  return out.str();
}

// The number of elements, or false when a dimension is negative or the count overflows 64 bits.
inline bool checked_element_count(const Shape& shape, std::uint64_t& count) {
  count = 1;
  for (std::int64_t extent : shape) {
    if (extent < 0) return false;
    const auto e = static_cast<std::uint64_t>(extent);
    if (e != 0 && count > std::numeric_limits<std::uint64_t>::max() / e) return false;
    count *= e;
  }
  return true;
}

// The bytes a tensor of this dtype and shape occupies, or false on a negative extent or overflow.
inline bool checked_byte_size(DType dtype, const Shape& shape, std::uint64_t& bytes) {
  std::uint64_t count = 0;
  if (!checked_element_count(shape, count)) return false;
  const std::uint64_t size = dtype_size(dtype);
  if (count > std::numeric_limits<std::uint64_t>::max() / size) return false;
  bytes = count * size;
  return true;
}

}  // namespace trident::io
