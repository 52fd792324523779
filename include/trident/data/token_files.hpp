#pragma once
// A corpus from llm.c token files (.bin shards), concatenated in the order given.

#include <trident/core/error.hpp>
#include <trident/data/token_stream.hpp>
#include <trident/io/token_file.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace trident::data {

// Reads the shards in order. Every token must lie in [0, vocab_size) (50257 for GPT-2):
// a token outside is reported with its file and position, before it can index past an
// embedding table.
inline TokenStream read_token_files(const std::vector<std::string>& paths, std::int32_t vocab_size) {
  require_argument(!paths.empty(), "trident::data::read_token_files: no files given");
  require_argument(vocab_size > 0, "trident::data::read_token_files: vocabulary size ", vocab_size,
                   " must be positive");
  TokenStream stream;
  stream.vocab_size = vocab_size;
  for (const std::string& path : paths) {
    const std::vector<std::int32_t> shard = io::read_token_file(path);
    const std::size_t bad = find_token_outside_vocabulary(shard, vocab_size);
    require(bad == shard.size(), "trident::data::read_token_files: token ", bad < shard.size() ? shard[bad] : 0,
            " at position ", bad, " of '", path, "' is outside the vocabulary [0, ", vocab_size, ")");
    stream.tokens.insert(stream.tokens.end(), shard.begin(), shard.end());
  }
  return stream;
}

}  // namespace trident::data
