#pragma once
// Reading and validating the JSON header of a safetensors file
// (https://huggingface.co/docs/safetensors): 8-byte little-endian length N, N bytes of JSON
// {"name": {"dtype", "shape", "data_offsets"}, ..., "__metadata__": {string: string}}, then
// the data section, which the tensors must tile exactly: no gaps, no overlaps, no tail.
// Every check names the file, the tensor and the offending values, because a corrupt
// checkpoint is usually found on a cluster, far from the code that wrote it.

#include <trident/core/error.hpp>
#include <trident/io/dtype.hpp>
#include <trident/io/tensor_info.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace trident::io {

// The reference implementation refuses larger headers; so do we, before allocating them.
inline constexpr std::uint64_t max_safetensors_header_bytes = 100000000;

inline constexpr std::string_view safetensors_metadata_key = "__metadata__";

struct SafetensorsHeader {
  std::vector<TensorInfo> tensors;  // in file order: by data offset
  Metadata metadata;
};

namespace detail {

// nlohmann::json keeps one value of a repeated key without a word; the format forbids repeats
// (two tensors of one name would make a checkpoint ambiguous), so the parser's callback watches
// every object's keys and remembers the first repeat.
class DuplicateKeyWatch {
 public:
  bool on_event(nlohmann::ordered_json::parse_event_t event, const nlohmann::ordered_json& parsed) {
    using event_t = nlohmann::ordered_json::parse_event_t;
    if (event == event_t::object_start) {
      m_frames.emplace_back();
    } else if (event == event_t::object_end) {
      if (!m_frames.empty()) m_frames.pop_back();
    } else if (event == event_t::key && !m_frames.empty()) {
      const auto key = parsed.get<std::string>();
      Frame& frame = m_frames.back();
      if (!frame.keys.insert(key).second && m_duplicate.empty()) {
        if (m_frames.size() == 1)
          m_duplicate = "tensor name '" + key + "' appears more than once";
        else
          m_duplicate = "key '" + key + "' appears more than once in the entry of '" + m_frames.front().last_key + "'";
      }
      frame.last_key = key;
    }
    return true;
  }

  const std::string& duplicate() const { return m_duplicate; }

 private:
  struct Frame {
    std::set<std::string> keys;
    std::string last_key;
  };
  std::vector<Frame> m_frames;
  std::string m_duplicate;
};

inline std::string describe_offsets(const TensorInfo& tensor) {
  return "[" + std::to_string(tensor.data_begin) + ", " + std::to_string(tensor.data_end) + ")";
}

// A JSON value as a non-negative integer, or false.
inline bool json_to_unsigned(const nlohmann::ordered_json& value, std::uint64_t& result) {
  if (!value.is_number_unsigned()) return false;  // nlohmann parses every non-negative integer as unsigned
  result = value.get<std::uint64_t>();
  return true;
}

inline TensorInfo parse_tensor_entry(const std::string& name, const nlohmann::ordered_json& entry,
                                     std::uint64_t data_section_bytes, const std::string& where) {
  const std::string tensor = where + ": tensor '" + name + "'";
  require(entry.is_object(), tensor, ": entry is a JSON ", entry.type_name(), ", not an object");
  for (const char* field : {"dtype", "shape", "data_offsets"})
    require(entry.contains(field), tensor, ": entry has no \"", field, "\" (it reads ", entry.dump(), ")");

  TensorInfo info;
  info.name = name;
  const auto& dtype = entry["dtype"];
  require(dtype.is_string(), tensor, ": \"dtype\" is a JSON ", dtype.type_name(), ", not a string: ", dtype.dump());
  require(parse_dtype(dtype.get<std::string>(), info.dtype), tensor, ": unknown dtype ", dtype.dump());

  const auto& shape = entry["shape"];
  require(shape.is_array(), tensor, ": \"shape\" is a JSON ", shape.type_name(), ", not an array: ", shape.dump());
  for (std::size_t d = 0; d < shape.size(); ++d) {
    std::uint64_t extent = 0;
    require(json_to_unsigned(shape[d], extent) &&
                extent <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()),
            tensor, ": shape ", shape.dump(), " has extent ", shape[d].dump(), " at dimension ", d,
            ", not a non-negative integer");
    info.shape.push_back(static_cast<std::int64_t>(extent));
  }

  const auto& offsets = entry["data_offsets"];
  require(offsets.is_array() && offsets.size() == 2 && json_to_unsigned(offsets[0], info.data_begin) &&
              json_to_unsigned(offsets[1], info.data_end),
          tensor, ": \"data_offsets\" must be [begin, end] with non-negative integers, not ", offsets.dump());
  require(info.data_begin <= info.data_end, tensor, ": data_offsets [", info.data_begin, ", ", info.data_end,
          "] begin after they end");

  std::uint64_t expected_bytes = 0;
  require(checked_byte_size(info.dtype, info.shape, expected_bytes), tensor, ": shape ", format_shape(info.shape),
          " of dtype ", dtype_name(info.dtype), " has more bytes than 64 bits can count");
  require(info.byte_size() == expected_bytes, tensor, ": data_offsets [", info.data_begin, ", ", info.data_end,
          "] hold ", info.byte_size(), " bytes but dtype ", dtype_name(info.dtype), " and shape ",
          format_shape(info.shape), " need ", expected_bytes);
  require(info.data_end <= data_section_bytes, tensor, ": data_offsets [", info.data_begin, ", ", info.data_end,
          "] run past the end of the data section, which has ", data_section_bytes, " bytes (is the file truncated?)");
  return info;
}

inline Metadata parse_metadata(const nlohmann::ordered_json& value, const std::string& where) {
  require(value.is_object(), where, ": \"__metadata__\" is a JSON ", value.type_name(), ", not an object of strings");
  Metadata metadata;
  for (const auto& [key, text] : value.items()) {
    require(text.is_string(), where, ": \"__metadata__\" entry '", key, "' is a JSON ", text.type_name(),
            ", not a string: ", text.dump());
    metadata.emplace(key, text.get<std::string>());
  }
  return metadata;
}

// The format requires the tensors, in offset order, to cover [0, data section size) exactly.
inline void check_tiling(const std::vector<TensorInfo>& sorted, std::uint64_t data_section_bytes,
                         const std::string& where) {
  std::uint64_t covered = 0;
  const TensorInfo* previous = nullptr;
  for (const TensorInfo& tensor : sorted) {
    if (tensor.data_begin > covered) {
      throw Error(trident::detail::concat(
          where, ": a gap of ", tensor.data_begin - covered, " bytes in the data section at offset ", covered,
          previous ? " after tensor '" + previous->name + "' " + describe_offsets(*previous) : std::string(),
          " before tensor '", tensor.name, "' ", describe_offsets(tensor), "; tensors must tile the data section"));
    }
    if (tensor.data_begin < covered) {
      throw Error(trident::detail::concat(where, ": tensor '", tensor.name, "' ", describe_offsets(tensor),
                                          " overlaps tensor '", previous->name, "' ", describe_offsets(*previous)));
    }
    covered = tensor.data_end;
    previous = &tensor;
  }
  require(covered == data_section_bytes, where, ": the data section has ", data_section_bytes,
          " bytes but the tensors cover only [0, ", covered, "): ", data_section_bytes - covered, " bytes at offset ",
          covered, " belong to no tensor");
}

}  // namespace detail

// Parses and validates a header. `header_json` is the N bytes after the length field, trailing
// space padding included; `data_section_bytes` what follows it in the file; `file` names the
// file in messages.
inline SafetensorsHeader parse_safetensors_header(std::string_view header_json, std::uint64_t data_section_bytes,
                                                  const std::string& file) {
  const std::string where = "safetensors file '" + file + "'";
  require(!header_json.empty() && header_json.front() == '{', where,
          ": the header does not start with '{' (is this a safetensors file?)");

  detail::DuplicateKeyWatch watch;
  nlohmann::ordered_json root;
  try {
    root = nlohmann::ordered_json::parse(
        header_json.begin(), header_json.end(),
        [&watch](int, nlohmann::ordered_json::parse_event_t event, nlohmann::ordered_json& parsed) {
          return watch.on_event(event, parsed);
        });
  } catch (const nlohmann::ordered_json::exception& error) {
    throw Error(trident::detail::concat(where, ": the ", header_json.size(),
                                        "-byte header is not valid JSON: ", error.what(),
                                        " (columns count from the start of the JSON, which begins at file offset 8)"));
  }
  require(watch.duplicate().empty(), where, ": ", watch.duplicate());
  require(root.is_object(), where, ": the header is a JSON ", root.type_name(), ", not an object");

  SafetensorsHeader header;
  for (const auto& [name, value] : root.items()) {
    if (name == safetensors_metadata_key)
      header.metadata = detail::parse_metadata(value, where);
    else
      header.tensors.push_back(detail::parse_tensor_entry(name, value, data_section_bytes, where));
  }
  // Stable: zero-byte tensors sharing an offset keep the header's order.
  std::stable_sort(header.tensors.begin(), header.tensors.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return a.data_begin != b.data_begin ? a.data_begin < b.data_begin : a.data_end < b.data_end;
  });
  detail::check_tiling(header.tensors, data_section_bytes, where);
  return header;
}

}  // namespace trident::io
