#pragma once
// Any file as a byte-level corpus: each byte is one token, so the vocabulary has 256 tokens.
// Needs no tokenizer, which makes it the simplest real-text source for small experiments.

#include <trident/core/error.hpp>
#include <trident/data/token_stream.hpp>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace trident::data {

inline constexpr std::int32_t byte_vocab_size = 256;

inline TokenStream read_text_bytes(const std::string& path) {
  std::ifstream stream(path, std::ios::binary);
  require(stream.is_open(), "trident::data::read_text_bytes: cannot open '", path, "': ", std::strerror(errno));
  const std::vector<char> bytes((std::istreambuf_iterator<char>(stream)), std::istreambuf_iterator<char>());
  require(!stream.bad(), "trident::data::read_text_bytes: reading '", path, "' failed after ", bytes.size(), " bytes");
  TokenStream text;
  text.vocab_size = byte_vocab_size;
  text.tokens.reserve(bytes.size());
  for (char byte : bytes) text.tokens.push_back(static_cast<unsigned char>(byte));
  return text;
}

}  // namespace trident::data
