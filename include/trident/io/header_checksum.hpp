#pragma once
// A checksum of a safetensors file's header, stored in its __metadata__ as
// "trident.header_checksum": it covers every other metadata entry (the step, the seed, the
// model's config, the tensors' own checksums) and every tensor's name, dtype and shape, in file
// order. An edited step or a deleted checksum entry then makes the file refuse to open, as a
// flipped data bit makes its tensor's checksum fail.

#include <trident/io/checksum.hpp>
#include <trident/io/dtype.hpp>
#include <trident/io/tensor_info.hpp>

#include <string>

namespace trident::io {

inline const std::string& header_checksum_key() {
  static const std::string key = "trident.header_checksum";
  return key;
}

// The checksum of `metadata` (all but the header checksum itself) and of the tensors' names,
// dtypes and shapes (TensorSpec or TensorInfo, in file order).
template <class Tensors>
std::string header_checksum(const Tensors& tensors, const Metadata& metadata) {
  std::string text;
  for (const auto& [key, value] : metadata)  // a std::map: sorted by key
    if (key != header_checksum_key()) text += key + '=' + value + '\n';
  for (const auto& t : tensors) {
    text += t.name + ':' + std::string(dtype_name(t.dtype)) + '[';
    for (std::size_t d = 0; d < t.shape.size(); ++d) text += (d ? "," : "") + std::to_string(t.shape[d]);
    text += "]\n";
  }
  WordSumChecksum checksum;
  checksum.add(0, text.data(), text.size());
  return checksum.text();
}

}  // namespace trident::io
