#pragma once
// The shape of a GPT-2 model, as Hugging Face's GPT2Config names it (n_layer, n_head, n_embd,
// n_positions, vocab_size).

#include <trident/core/error.hpp>

#include <cstdint>
#include <string>

namespace trident::gpt2 {

struct Gpt2Config {
  int layers = 12;    // L
  int heads = 12;     // H
  int hidden = 768;   // C
  int seq = 1024;     // T, the context (number of learned positions)
  int vocab = 50257;  // V, any size

  int head_dim() const { return hidden / heads; }

  void validate() const {
    require_argument(layers >= 1 && heads >= 1 && hidden >= 1 && seq >= 1 && vocab >= 1,
                     "trident::gpt2::Gpt2Config: every size must be >= 1 (layers=", layers, ", heads=", heads,
                     ", hidden=", hidden, ", seq=", seq, ", vocab=", vocab, ")");
    require_argument(hidden % heads == 0, "trident::gpt2::Gpt2Config: hidden size ", hidden,
                     " is not divisible by the number of heads ", heads);
  }

  // Parameters outside the embeddings, the N of the 6N FLOPs-per-token estimate.
  std::int64_t non_embedding_parameters() const {
    const std::int64_t c = hidden;
    return static_cast<std::int64_t>(layers) * (12 * c * c + 13 * c) + 2 * c;
  }

  // Training FLOPs per token: 6N for the blocks, 6VC for the tied head, 12LCT for attention
  // (the PaLM / nanoGPT model-FLOPs count).
  double training_flops_per_token() const {
    return 6.0 * static_cast<double>(non_embedding_parameters()) + 6.0 * vocab * static_cast<double>(hidden) +
           12.0 * layers * static_cast<double>(hidden) * seq;
  }

  std::string describe() const {
    return detail::concat("L=", layers, " H=", heads, " C=", hidden, " T=", seq, " V=", vocab);
  }

  friend bool operator==(const Gpt2Config& a, const Gpt2Config& b) {
    return a.layers == b.layers && a.heads == b.heads && a.hidden == b.hidden && a.seq == b.seq && a.vocab == b.vocab;
  }
  friend bool operator!=(const Gpt2Config& a, const Gpt2Config& b) { return !(a == b); }
};

}  // namespace trident::gpt2
