#pragma once
// A checksum per tensor, stored in a safetensors file's __metadata__ as
// "trident.checksum.<tensor name>": "fnv1a64:<16 hex digits>" over the tensor's bytes as stored
// (little-endian). Files from other writers simply have none; a file with them is verified
// before a checkpoint is loaded, so a flipped bit is an error naming the tensor, not a model
// that silently trains on.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

namespace trident::io {

inline const std::string& checksum_key_prefix() {
  static const std::string prefix = "trident.checksum.";
  return prefix;
}

// FNV-1a, 64 bits, fed in pieces.
class Checksum {
 public:
  void add(const void* data, std::size_t bytes) {
    const auto* p = static_cast<const unsigned char*>(data);
    std::uint64_t h = m_hash;
    for (std::size_t i = 0; i < bytes; ++i) h = (h ^ p[i]) * 1099511628211ull;
    m_hash = h;
  }
  std::uint64_t value() const { return m_hash; }
  std::string text() const {
    char digits[17];
    std::snprintf(digits, sizeof digits, "%016llx", static_cast<unsigned long long>(m_hash));
    return std::string("fnv1a64:") + digits;
  }

 private:
  std::uint64_t m_hash = 14695981039346656037ull;  // the FNV-1a 64 offset basis
};

}  // namespace trident::io
