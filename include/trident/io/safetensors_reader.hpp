#pragma once
// Reading a safetensors file: the header is read and validated when the file is opened; tensor
// data is read on request, whole, or as a slice straight from the file (a tensor-parallel rank
// reads only its shard, never the whole tensor).

#include <trident/core/error.hpp>
#include <trident/io/checksum.hpp>
#include <trident/io/dtype.hpp>
#include <trident/io/endian.hpp>
#include <trident/io/header_checksum.hpp>
#include <trident/io/safetensors_header.hpp>
#include <trident/io/tensor_info.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

namespace trident::io {

// Elements [begin, begin + count) of one dimension.
struct IndexRange {
  std::int64_t begin = 0;
  std::int64_t count = 0;
};

// An open safetensors file. The stream stays open, so the tensors read are those of the file
// that was validated even if a writer renames a new file over the name meanwhile. Reads move
// the stream: one object must not be read from by several threads at once.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(std::string path) : m_path(std::move(path)) {
    const std::string where = "safetensors file '" + m_path + "'";
    m_stream.open(m_path, std::ios::binary);
    require(m_stream.is_open(), "trident::io::SafetensorsFile: cannot open '", m_path, "': ", std::strerror(errno));
    m_stream.seekg(0, std::ios::end);
    const auto end = m_stream.tellg();
    require(end >= 0, where, ": cannot determine the file size");
    const auto file_size = static_cast<std::uint64_t>(end);
    require(file_size >= 8, where, " is ", file_size, " bytes long, shorter than the 8-byte header length");

    unsigned char length_bytes[8];
    read_bytes(0, 8, length_bytes, "the header length");
    const std::uint64_t header_bytes = load_u64_le(length_bytes);
    require(header_bytes <= max_safetensors_header_bytes, where, ": header length ", header_bytes,
            " is absurdly large (more than ", max_safetensors_header_bytes, " bytes)");
    require(header_bytes <= file_size - 8, where, ": header length ", header_bytes, " runs past the end of the file (",
            file_size, " bytes, so at most ", file_size - 8, " bytes of header)");

    std::string header_json(static_cast<std::size_t>(header_bytes), '\0');
    read_bytes(8, header_bytes, header_json.data(), "the header");
    m_data_start = 8 + header_bytes;
    SafetensorsHeader header = parse_safetensors_header(header_json, file_size - m_data_start, m_path);
    m_tensors = std::move(header.tensors);
    m_metadata = std::move(header.metadata);
    for (std::size_t i = 0; i < m_tensors.size(); ++i) m_index.emplace(m_tensors[i].name, i);
    const auto recorded = m_metadata.find(header_checksum_key());
    if (recorded != m_metadata.end()) {
      const std::string actual = header_checksum(m_tensors, m_metadata);
      require(actual == recorded->second, where, ": the header was changed after it was written (its metadata or ",
              "tensor list has checksum ", actual, " but the file recorded ", recorded->second, ")");
    }
  }

  // Whether the file records a checksum of its header (every file trident writes does).
  bool has_header_checksum() const { return m_metadata.count(header_checksum_key()) != 0; }

  const std::string& path() const { return m_path; }
  // In file order: by data offset.
  const std::vector<TensorInfo>& tensors() const { return m_tensors; }
  const Metadata& metadata() const { return m_metadata; }
  // File offset of the data section (8 + header length).
  std::uint64_t data_start() const { return m_data_start; }

  bool contains(const std::string& name) const { return m_index.count(name) != 0; }

  // Reads every tensor that has a checksum in the metadata (checksum.hpp) and compares; throws
  // naming the first tensor whose bytes differ, or a checksum of a tensor the file lacks.
  // Returns how many tensors were verified (0 for a file without checksums).
  std::size_t verify_checksums() const {
    std::vector<char> buffer;
    const auto recorded = recorded_checksums();
    for (const auto& [name, text] : recorded) {
      require(contains(name), "safetensors file '", m_path, "': the metadata holds a checksum of tensor '", name,
              "', which the file does not hold");
      const TensorInfo& info = tensor(name);
      std::string actual;
      if (records_algorithm<WordSumChecksum>(text)) {
        actual = checksum_of<WordSumChecksum>(info, name, buffer);
      } else if (records_algorithm<Fnv1aChecksum>(text)) {
        actual = checksum_of<Fnv1aChecksum>(info, name, buffer);
      } else {
        throw Error(trident::detail::concat("safetensors file '", m_path, "': the checksum of tensor '", name, "' is '",
                                            text, "', of an unknown algorithm (known: ", WordSumChecksum::algorithm,
                                            ", ", Fnv1aChecksum::algorithm, ")"));
      }
      require_checksum(name, actual, text);
    }
    return recorded.size();
  }

  // The checksums the metadata records, by tensor name ("<algorithm>:<digits>").
  std::map<std::string, std::string> recorded_checksums() const {
    const std::string& prefix = checksum_key_prefix();
    std::map<std::string, std::string> recorded;
    for (auto it = m_metadata.lower_bound(prefix); it != m_metadata.end() && it->first.rfind(prefix, 0) == 0; ++it)
      recorded.emplace(it->first.substr(prefix.size()), it->second);
    return recorded;
  }

  // Throws, naming the tensor, when the checksum of its bytes is not the one recorded.
  void require_checksum(const std::string& name, const std::string& actual, const std::string& recorded) const {
    require(actual == recorded, "safetensors file '", m_path, "': tensor '", name,
            "' is corrupt: its bytes have checksum ", actual, " but the file recorded ", recorded);
  }

  const TensorInfo& tensor(const std::string& name) const {
    const auto found = m_index.find(name);
    if (found == m_index.end()) {
      std::string some;
      for (std::size_t i = 0; i < m_tensors.size() && i < 8; ++i) some += (i ? ", '" : "'") + m_tensors[i].name + "'";
      if (m_tensors.size() > 8) some += ", ...";
      throw Error("trident::io::SafetensorsFile: tensor '" + name + "' is not in file '" + m_path + "' (it holds " +
                  std::to_string(m_tensors.size()) + " tensors" + (some.empty() ? "" : ": " + some) + ")");
    }
    return m_tensors[found->second];
  }

  // Reads the whole tensor into `destination` (product(expected_shape) elements), converting
  // F32 <-> F64 and I32 <-> I64 as the destination type asks.
  template <class T>
  void read(const std::string& name, const Shape& expected_shape, T* destination) const {
    const TensorInfo& info = checked_tensor<T>(name, expected_shape, "read");
    std::uint64_t count = 0;
    checked_element_count(info.shape, count);
    read_elements(info, 0, count, destination);
  }

  template <class T>
  std::vector<T> read(const std::string& name, const Shape& expected_shape) const {
    const TensorInfo& info = checked_tensor<T>(name, expected_shape, "read");
    std::uint64_t count = 0;
    checked_element_count(info.shape, count);
    std::vector<T> values(static_cast<std::size_t>(count));
    read_elements(info, 0, count, values.data());
    return values;
  }

  // Elements `range` of a 1-D tensor into `destination` (range.count elements).
  template <class T>
  void read_slice(const std::string& name, const Shape& expected_shape, IndexRange range, T* destination) const {
    const TensorInfo& info = checked_tensor<T>(name, expected_shape, "read_slice");
    require_argument(info.shape.size() == 1, "trident::io::SafetensorsFile::read_slice: tensor '", name, "' in '",
                     m_path, "' has shape ", format_shape(info.shape), "; a range slices 1-D tensors only");
    check_range(info, 0, range);
    read_elements(info, static_cast<std::uint64_t>(range.begin), static_cast<std::uint64_t>(range.count), destination);
  }

  // Elements [first, first + count) of a tensor of any rank, in row-major order, into
  // `destination`: a piece of it, as the parallel writer writes them.
  template <class T>
  void read_range(const std::string& name, const Shape& expected_shape, std::uint64_t first, std::uint64_t count,
                  T* destination) const {
    const TensorInfo& info = checked_tensor<T>(name, expected_shape, "read_range");
    std::uint64_t elements = 0;
    checked_element_count(info.shape, elements);
    require_argument(first <= elements && count <= elements - first,
                     "trident::io::SafetensorsFile::read_range: elements [", first, ", ", first + count,
                     ") are outside tensor '", name, "' of shape ", format_shape(info.shape), " in '", m_path, "'");
    read_elements(info, first, count, destination);
  }

  // Adds the stored bytes of elements [first, first + count) of a tensor to `checksum`, at
  // their offset in the tensor: ranks that each add their pieces and sum the results verify a
  // tensor together, no rank reading it whole.
  void add_to_checksum(const std::string& name, std::uint64_t first, std::uint64_t count,
                       WordSumChecksum& checksum) const {
    const TensorInfo& info = tensor(name);
    const std::uint64_t element = dtype_size(info.dtype);
    require_argument(first * element + count * element <= info.byte_size(),
                     "trident::io::SafetensorsFile::add_to_checksum: elements [", first, ", ", first + count,
                     ") are outside tensor '", name, "' in '", m_path, "'");
    constexpr std::uint64_t chunk = std::uint64_t(1) << 22;
    std::vector<char> buffer;
    for (std::uint64_t done = 0, bytes = count * element; done < bytes;) {
      const auto n = std::min(bytes - done, chunk);
      buffer.resize(static_cast<std::size_t>(n));
      read_bytes(m_data_start + info.data_begin + first * element + done, n, buffer.data(), "tensor '" + name + "'");
      checksum.add(first * element + done, buffer.data(), static_cast<std::size_t>(n));
      done += n;
    }
  }

  // The block rows x cols of a 2-D tensor into `destination`, row-major (rows.count x cols.count).
  template <class T>
  void read_slice(const std::string& name, const Shape& expected_shape, IndexRange rows, IndexRange cols,
                  T* destination) const {
    const TensorInfo& info = checked_tensor<T>(name, expected_shape, "read_slice");
    require_argument(info.shape.size() == 2, "trident::io::SafetensorsFile::read_slice: tensor '", name, "' in '",
                     m_path, "' has shape ", format_shape(info.shape),
                     "; a row and column range slice 2-D tensors only");
    check_range(info, 0, rows);
    check_range(info, 1, cols);
    const auto columns = static_cast<std::uint64_t>(info.shape[1]);
    const auto first_row = static_cast<std::uint64_t>(rows.begin), row_count = static_cast<std::uint64_t>(rows.count);
    const auto first_col = static_cast<std::uint64_t>(cols.begin), col_count = static_cast<std::uint64_t>(cols.count);
    if (col_count == columns) {  // whole rows are contiguous in the file: one read
      read_elements(info, first_row * columns, row_count * columns, destination);
      return;
    }
    for (std::uint64_t r = 0; r < row_count; ++r)
      read_elements(info, (first_row + r) * columns + first_col, col_count, destination + r * col_count);
  }

  // The checksum of a tensor's bytes as stored, read in pieces.
  template <class Checksum>
  std::string checksum_of(const TensorInfo& info, const std::string& name, std::vector<char>& buffer) const {
    Checksum checksum;
    constexpr std::uint64_t chunk = std::uint64_t(1) << 22;
    for (std::uint64_t done = 0; done < info.byte_size();) {
      const auto n = std::min(info.byte_size() - done, chunk);
      buffer.resize(static_cast<std::size_t>(n));
      read_bytes(m_data_start + info.data_begin + done, n, buffer.data(), "tensor '" + name + "'");
      checksum.add(done, buffer.data(), static_cast<std::size_t>(n));
      done += n;
    }
    return checksum.text();
  }

 private:
  template <class T>
  static constexpr bool is_readable_type = std::is_same_v<T, float> || std::is_same_v<T, double> ||
                                           std::is_same_v<T, std::int32_t> || std::is_same_v<T, std::int64_t>;

  template <class T>
  const TensorInfo& checked_tensor(const std::string& name, const Shape& expected_shape, const char* operation) const {
    static_assert(is_readable_type<T>, "safetensors data is read as float, double, int32_t or int64_t");
    const TensorInfo& info = tensor(name);
    require(info.shape == expected_shape, "trident::io::SafetensorsFile::", operation, ": tensor '", name,
            "' has shape ", format_shape(info.shape), " in file '", m_path, "' but the model expects ",
            format_shape(expected_shape));
    const bool file_is_float = info.dtype == DType::F32 || info.dtype == DType::F64;
    const bool file_is_integer = info.dtype == DType::I32 || info.dtype == DType::I64;
    require(std::is_floating_point_v<T> ? file_is_float : file_is_integer, "trident::io::SafetensorsFile::", operation,
            ": tensor '", name, "' in file '", m_path, "' has dtype ", dtype_name(info.dtype),
            ", which cannot be read as ", dtype_name(dtype_of_v<T>),
            " (F32 and F64 read as either float type, I32 and I64 as either integer type)");
    return info;
  }

  void check_range(const TensorInfo& info, std::size_t dimension, IndexRange range) const {
    const std::int64_t extent = info.shape[dimension];
    require_argument(
        range.begin >= 0 && range.count >= 0 && range.begin <= extent && range.count <= extent - range.begin,
        "trident::io::SafetensorsFile::read_slice: range [", range.begin, ", ", range.begin + range.count,
        ") of dimension ", dimension, " is outside tensor '", info.name, "' of shape ", format_shape(info.shape),
        " in '", m_path, "'");
  }

  void read_bytes(std::uint64_t offset, std::uint64_t bytes, void* destination, const std::string& what) const {
    auto* cursor = static_cast<char*>(destination);
    constexpr std::uint64_t max_read = std::uint64_t(1) << 30;
    m_stream.clear();
    m_stream.seekg(static_cast<std::streamoff>(offset));
    for (std::uint64_t done = 0; done < bytes;) {
      const auto n = std::min(bytes - done, max_read);
      m_stream.read(cursor + done, static_cast<std::streamsize>(n));
      const auto got = static_cast<std::uint64_t>(m_stream.gcount());
      require(got == n, "safetensors file '", m_path, "': reading ", what, " (", bytes, " bytes at offset ", offset,
              ") stopped after ", done + got, " bytes: the file is shorter than its header says");
      done += n;
    }
  }

  // Elements [first, first + count) of the tensor, converted to T.
  template <class T>
  void read_elements(const TensorInfo& info, std::uint64_t first, std::uint64_t count, T* destination) const {
    switch (info.dtype) {
      case DType::F32:
        return read_converted<float>(info, first, count, destination);
      case DType::F64:
        return read_converted<double>(info, first, count, destination);
      case DType::I32:
        return read_converted<std::int32_t>(info, first, count, destination);
      case DType::I64:
        return read_converted<std::int64_t>(info, first, count, destination);
      default:
        break;
    }
    throw Error("trident::io::SafetensorsFile: tensor '" + info.name + "' has unreadable dtype " +
                std::string(dtype_name(info.dtype)));
  }

  template <class Stored, class T>
  void read_converted(const TensorInfo& info, std::uint64_t first, std::uint64_t count, T* destination) const {
    const std::uint64_t offset = m_data_start + info.data_begin + first * sizeof(Stored);
    const std::string what = "tensor '" + info.name + "'";
    if constexpr (std::is_same_v<Stored, T>) {
      read_bytes(offset, count * sizeof(T), destination, what);
      to_or_from_little_endian(destination, sizeof(T), static_cast<std::size_t>(count));
    } else if constexpr (std::is_floating_point_v<Stored> != std::is_floating_point_v<T>) {
      throw Error("trident::io::SafetensorsFile: tensor '" + info.name + "' mixes float and integer types");
    } else {
      constexpr std::uint64_t chunk = 1 << 16;
      std::vector<Stored> staging(static_cast<std::size_t>(std::min(count, chunk)));
      for (std::uint64_t done = 0; done < count;) {
        const auto n = std::min(count - done, chunk);
        read_bytes(offset + done * sizeof(Stored), n * sizeof(Stored), staging.data(), what);
        to_or_from_little_endian(staging.data(), sizeof(Stored), static_cast<std::size_t>(n));
        for (std::uint64_t i = 0; i < n; ++i) {
          const Stored value = staging[static_cast<std::size_t>(i)];
          if constexpr (std::is_integral_v<T> && sizeof(T) < sizeof(Stored)) {
            require(value >= std::numeric_limits<T>::min() && value <= std::numeric_limits<T>::max(),
                    "trident::io::SafetensorsFile: element ", first + done + i, " of tensor '", info.name, "' in '",
                    m_path, "' is ", value, ", which does not fit the requested ", dtype_name(dtype_of_v<T>));
          }
          destination[done + i] = static_cast<T>(value);
        }
        done += n;
      }
    }
  }

  std::string m_path;
  mutable std::ifstream m_stream;
  std::uint64_t m_data_start = 0;
  std::vector<TensorInfo> m_tensors;
  Metadata m_metadata;
  std::unordered_map<std::string, std::size_t> m_index;
};

}  // namespace trident::io
