#pragma once
// Planning a safetensors file before any data is written: from the tensors' names, dtypes and
// shapes (and the metadata) it computes the header bytes and every tensor's offsets. Writing is
// then only "put these bytes at that offset", so several ranks can later fill their shards of
// one planned file independently.

#include <trident/core/error.hpp>
#include <trident/io/dtype.hpp>
#include <trident/io/endian.hpp>
#include <trident/io/safetensors_header.hpp>
#include <trident/io/tensor_info.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <set>
#include <string>
#include <vector>

namespace trident::io {

struct SafetensorsLayout {
  // Everything before the data section: the 8-byte little-endian length, the JSON header and
  // the spaces that pad it to a multiple of 8 bytes (so the data section is 8-byte aligned).
  std::string header;
  std::vector<TensorInfo> tensors;  // in the order given, laid out back to back
  std::uint64_t file_size = 0;

  std::uint64_t data_start() const { return header.size(); }
  // Where the tensor's first byte lies, counted from the start of the file.
  std::uint64_t file_offset(const TensorInfo& tensor) const { return data_start() + tensor.data_begin; }

  const TensorInfo& tensor(const std::string& name) const {
    for (const TensorInfo& candidate : tensors)
      if (candidate.name == name) return candidate;
    throw InvalidArgument("trident::io::SafetensorsLayout: no tensor named '" + name + "' in the layout");
  }
};

// Lays the tensors out back to back in the order given. The JSON is written as the reference
// writer writes it: compact, "__metadata__" first (left out when empty), each entry's fields in
// the order dtype, shape, data_offsets. Giving wider dtypes first keeps every tensor aligned to
// its element size (the reference writer sorts by dtype for that reason); readers do not need it.
inline SafetensorsLayout plan_safetensors(const std::vector<TensorSpec>& specs, const Metadata& metadata = {}) {
  const char* operation = "trident::io::plan_safetensors";
  SafetensorsLayout layout;
  nlohmann::ordered_json root = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json entries = nlohmann::ordered_json::object();
    for (const auto& [key, value] : metadata) entries[key] = value;
    root[std::string(safetensors_metadata_key)] = entries;
  }

  std::set<std::string> names;
  std::uint64_t offset = 0;
  for (const TensorSpec& spec : specs) {
    require_argument(!spec.name.empty(), operation, ": a tensor has an empty name");
    require_argument(spec.name != safetensors_metadata_key, operation, ": '", spec.name,
                     "' is reserved for the metadata and cannot name a tensor");
    require_argument(names.insert(spec.name).second, operation, ": tensor name '", spec.name,
                     "' is given more than once");
    std::uint64_t bytes = 0;
    require_argument(checked_byte_size(spec.dtype, spec.shape, bytes), operation, ": tensor '", spec.name,
                     "' has shape ", format_shape(spec.shape), ", which has a negative extent or too many elements");
    TensorInfo info{spec.name, spec.dtype, spec.shape, offset, offset + bytes};
    require_argument(info.data_end >= offset, operation, ": the file would exceed 2^64 bytes at tensor '", spec.name,
                     "'");
    offset = info.data_end;
    root[spec.name] = nlohmann::ordered_json{{"dtype", std::string(dtype_name(spec.dtype))},
                                             {"shape", spec.shape},
                                             {"data_offsets", {info.data_begin, info.data_end}}};
    layout.tensors.push_back(std::move(info));
  }

  std::string json;
  try {
    json = root.dump();
  } catch (const nlohmann::ordered_json::exception& error) {
    throw InvalidArgument(trident::detail::concat(operation,
                                                  ": a tensor name or metadata entry cannot be written as "
                                                  "JSON (names must be valid UTF-8): ",
                                                  error.what()));
  }
  json.append((8 - json.size() % 8) % 8, ' ');

  unsigned char length[8];
  store_u64_le(json.size(), length);
  layout.header.assign(reinterpret_cast<const char*>(length), 8);
  layout.header += json;
  layout.file_size = layout.header.size() + offset;
  return layout;
}

}  // namespace trident::io
