#pragma once
// Writing a whole safetensors file from host memory, atomically: the file appears under its
// name complete or not at all, with a checksum of every tensor in its metadata (checksum.hpp)
// and one of the header itself (header_checksum.hpp).

#include <trident/core/error.hpp>
#include <trident/io/atomic_file.hpp>
#include <trident/io/checksum.hpp>
#include <trident/io/dtype.hpp>
#include <trident/io/endian.hpp>
#include <trident/io/fault_injection.hpp>
#include <trident/io/header_checksum.hpp>
#include <trident/io/safetensors_layout.hpp>
#include <trident/io/tensor_info.hpp>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

namespace trident::io {

// A tensor in host memory, row-major (C order), elements in host byte order. The data is
// borrowed: it must outlive the write.
struct HostTensor {
  TensorSpec spec;
  const void* data = nullptr;
};

template <class T>
HostTensor host_tensor(std::string name, Shape shape, const T* data) {
  return HostTensor{TensorSpec{std::move(name), dtype_of_v<T>, std::move(shape)}, data};
}

// Checks that the vector holds exactly the shape's elements.
template <class T>
HostTensor host_tensor(std::string name, Shape shape, const std::vector<T>& data) {
  std::uint64_t count = 0;
  require_argument(checked_element_count(shape, count) && count == data.size(), "trident::io::host_tensor: tensor '",
                   name, "' has shape ", format_shape(shape), " but ", data.size(), " elements");
  return host_tensor(std::move(name), std::move(shape), data.data());
}

// A temporary vector would be gone before the write.
template <class T>
HostTensor host_tensor(std::string name, Shape shape, std::vector<T>&& data) = delete;

namespace detail {

// Hands `sink` the bytes of `data` in little-endian order, in pieces: the data itself on a
// little-endian host, byte-swapped copies otherwise.
template <class Sink>
void for_each_little_endian_piece(const void* data, std::uint64_t bytes, std::size_t element_size, Sink&& sink) {
  if (host_is_little_endian()) {
    sink(data, static_cast<std::size_t>(bytes));
    return;
  }
  constexpr std::size_t chunk = std::size_t(1) << 20;  // a multiple of every element size
  std::vector<unsigned char> buffer(std::min<std::uint64_t>(bytes, chunk));
  const auto* source = static_cast<const unsigned char*>(data);
  for (std::uint64_t done = 0; done < bytes;) {
    const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(bytes - done, chunk));
    std::memcpy(buffer.data(), source + done, n);
    swap_element_bytes(buffer.data(), element_size, n / element_size);
    sink(buffer.data(), n);
    done += n;
  }
}

}  // namespace detail

// Writes the tensors, in the order given, and the metadata to `path`. The bytes go to
// "<path>.tmp.<pid>.<n>" first, are flushed to disk and renamed over `path`; on any error
// (a short write, a full disk, a failed fsync, close or rename) the temporary is removed,
// `path` is left as it was, and trident::Error is thrown.
inline SafetensorsLayout write_safetensors(const std::string& path, const std::vector<HostTensor>& tensors,
                                           const Metadata& metadata = {}) {
  const char* operation = "trident::io::write_safetensors";
  std::vector<TensorSpec> specs;
  specs.reserve(tensors.size());
  for (const HostTensor& tensor : tensors) specs.push_back(tensor.spec);
  // Each tensor's checksum goes into the header, which precedes the data.
  Metadata with_checksums = metadata;
  for (const HostTensor& tensor : tensors) {
    std::uint64_t count = 0;
    if (!checked_element_count(tensor.spec.shape, count) || (tensor.data == nullptr && count != 0))
      continue;  // refused below
    WordSumChecksum checksum;
    std::uint64_t offset = 0;
    detail::for_each_little_endian_piece(tensor.data, count * dtype_size(tensor.spec.dtype),
                                         dtype_size(tensor.spec.dtype), [&](const void* piece, std::size_t n) {
                                           checksum.add(offset, piece, n);
                                           offset += n;
                                         });
    with_checksums[checksum_key_prefix() + tensor.spec.name] = checksum.text();
  }
  with_checksums[header_checksum_key()] = header_checksum(specs, with_checksums);
  const SafetensorsLayout layout = plan_safetensors(specs, with_checksums);
  for (std::size_t i = 0; i < tensors.size(); ++i)
    require_argument(tensors[i].data != nullptr || layout.tensors[i].byte_size() == 0, operation, ": tensor '",
                     tensors[i].spec.name, "' of shape ", format_shape(tensors[i].spec.shape),
                     " has no data (null pointer) for '", path, "'");

  // A one-rank write is rank 0 of its own group for fault injection.
  const WriteFault fault = detail::take_write_fault(0);
  AtomicFileWriter file(path, operation);
  file.inject(fault);
  file.write(layout.header.data(), layout.header.size());
  for (std::size_t i = 0; i < tensors.size(); ++i)
    detail::for_each_little_endian_piece(tensors[i].data, layout.tensors[i].byte_size(),
                                         dtype_size(layout.tensors[i].dtype),
                                         [&](const void* piece, std::size_t n) { file.write(piece, n); });
  require(file.bytes_written() == layout.file_size, operation, ": wrote ", file.bytes_written(), " bytes to '", path,
          "' but planned ", layout.file_size);
  file.commit();
  return layout;
}

}  // namespace trident::io
