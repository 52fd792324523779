#pragma once
// Files are little-endian; these helpers keep a big-endian host correct without slowing
// down the little-endian hosts everyone runs on (there the swaps are never called).

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace trident::io {

inline bool host_is_little_endian() {
  const std::uint16_t probe = 1;
  unsigned char first = 0;
  std::memcpy(&first, &probe, 1);
  return first == 1;
}

// Reverses the bytes of each of `count` elements of `element_size` bytes, in place.
inline void swap_element_bytes(void* data, std::size_t element_size, std::size_t count) {
  if (element_size <= 1) return;
  auto* bytes = static_cast<unsigned char*>(data);
  for (std::size_t i = 0; i < count; ++i) std::reverse(bytes + i * element_size, bytes + (i + 1) * element_size);
}

// Converts between host order and little-endian (the same operation both ways).
inline void to_or_from_little_endian(void* data, std::size_t element_size, std::size_t count) {
  if (!host_is_little_endian()) swap_element_bytes(data, element_size, count);
}

inline std::uint64_t load_u64_le(const unsigned char* bytes) {
  std::uint64_t value = 0;
  for (int i = 7; i >= 0; --i) value = (value << 8) | bytes[i];
  return value;
}

inline void store_u64_le(std::uint64_t value, unsigned char* bytes) {
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<unsigned char>(value >> (8 * i));
}

}  // namespace trident::io
