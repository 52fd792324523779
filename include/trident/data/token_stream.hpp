#pragma once
// A training corpus as the model sees it: a sequence of token ids and the vocabulary size.

#include <cstddef>
#include <cstdint>
#include <vector>

namespace trident::data {

struct TokenStream {
  std::vector<std::int32_t> tokens;
  std::int32_t vocab_size = 0;
};

// The position of the first token outside [0, vocab_size), or tokens.size() when all are inside.
inline std::size_t find_token_outside_vocabulary(const std::vector<std::int32_t>& tokens, std::int32_t vocab_size) {
  for (std::size_t i = 0; i < tokens.size(); ++i)
    if (tokens[i] < 0 || tokens[i] >= vocab_size) return i;
  return tokens.size();
}

}  // namespace trident::data
