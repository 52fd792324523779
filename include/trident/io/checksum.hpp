#pragma once
// A checksum per tensor, stored in a safetensors file's __metadata__ as
// "trident.checksum.<tensor name>": "<algorithm>:<16 hex digits>" over the tensor's bytes as
// stored (little-endian). Files from other writers simply have none; a file with them is
// verified before a checkpoint is loaded, so a flipped bit is an error naming the tensor, not a
// model that silently trains on.
//
// trident writes "wsum64": a weighted sum of the tensor's 4-byte words, modulo 2^64,
//   sum over k of weight(k) * word(k),   word(k) = bytes 4k..4k+3 as a little-endian uint32
// (missing bytes count as 0), weight(k) odd and pseudo-random in k. It is linear in every
// byte, so ranks that write disjoint pieces of a tensor add up their partial sums and get
// the checksum of the whole without anyone reading it whole; any single changed bit changes
// it (an odd weight times a power of two below 2^32 is never 0 modulo 2^64). Files written by
// earlier versions carry "fnv1a64" (FNV-1a over the bytes), which is still verified.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

namespace trident::io {

inline const std::string& checksum_key_prefix() {
  static const std::string prefix = "trident.checksum.";
  return prefix;
}

// The weighted word sum, fed with pieces at any byte offsets, in any order.
class WordSumChecksum {
 public:
  static constexpr const char* algorithm = "wsum64";

  void add(std::uint64_t byte_offset, const void* data, std::size_t bytes) {
    const auto* p = static_cast<const unsigned char*>(data);
    std::uint64_t sum = m_sum;
    // Bytes before the first whole word, and after the last, one at a time.
    while (bytes > 0 && byte_offset % 4 != 0) {
      sum += weight(byte_offset / 4) * (std::uint64_t(*p++) << (8 * (byte_offset % 4)));
      ++byte_offset;
      --bytes;
    }
    const std::uint64_t first_word = byte_offset / 4;
    const std::size_t words = bytes / 4;
    for (std::size_t k = 0; k < words; ++k, p += 4) {
      const std::uint64_t word =
          std::uint64_t(p[0]) | std::uint64_t(p[1]) << 8 | std::uint64_t(p[2]) << 16 | std::uint64_t(p[3]) << 24;
      sum += weight(first_word + k) * word;
    }
    byte_offset += 4 * words;
    for (std::size_t i = 0; i < bytes % 4; ++i, ++byte_offset)
      sum += weight(byte_offset / 4) * (std::uint64_t(*p++) << (8 * (byte_offset % 4)));
    m_sum = sum;
  }

  // Adds another piece's partial sum (of the same tensor).
  void merge(std::uint64_t partial) { m_sum += partial; }
  std::uint64_t value() const { return m_sum; }
  std::string text() const { return format(algorithm, m_sum); }

  static std::string format(const char* name, std::uint64_t value) {
    char digits[17];
    std::snprintf(digits, sizeof digits, "%016llx", static_cast<unsigned long long>(value));
    return std::string(name) + ":" + digits;
  }

 private:
  // splitmix64 of the word index, made odd.
  static std::uint64_t weight(std::uint64_t k) {
    std::uint64_t z = k + 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return (z ^ (z >> 31)) | 1u;
  }

  std::uint64_t m_sum = 0;
};

// FNV-1a, 64 bits, fed in order: what files of earlier versions record.
class Fnv1aChecksum {
 public:
  static constexpr const char* algorithm = "fnv1a64";

  void add(std::uint64_t /*byte_offset*/, const void* data, std::size_t bytes) {
    const auto* p = static_cast<const unsigned char*>(data);
    std::uint64_t h = m_hash;
    for (std::size_t i = 0; i < bytes; ++i) h = (h ^ p[i]) * 1099511628211ull;
    m_hash = h;
  }
  std::string text() const { return WordSumChecksum::format(algorithm, m_hash); }

 private:
  std::uint64_t m_hash = 14695981039346656037ull;  // the FNV-1a 64 offset basis
};

// Whether `recorded` ("<algorithm>:<digits>") names `Checksum`'s algorithm.
template <class Checksum>
bool records_algorithm(const std::string& recorded) {
  const std::size_t n = std::strlen(Checksum::algorithm);
  return recorded.size() > n && recorded.compare(0, n, Checksum::algorithm) == 0 && recorded[n] == ':';
}

}  // namespace trident::io
