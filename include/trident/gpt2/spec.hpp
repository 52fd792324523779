#pragma once
// GPT-2 (GPT2LMHeadModel) as a model spec of trident::nn: pre-LayerNorm blocks, learned
// positions, the input embedding tied to the output head, biases everywhere, no dropout,
// under the Hugging Face tensor names. Its L + 2 top-level layers are GPT-2's units: the
// embeddings (wte, wpe), the blocks h.0 .. h.{L-1}, and the head (ln_f, and wte as lm_head).
// Initialisation as GPT-2: N(0, 0.02^2) weights, the residual projections' scaled by
// 1/sqrt(2L), zero biases, unit LayerNorm gains. Every linear pair is Megatron-LM's split:
// c_attn by heads (its Q, K and V blocks each split), c_fc by columns, both c_proj by rows.

#include <trident/gpt2/config.hpp>
#include <trident/nn/spec.hpp>

#include <cmath>
#include <string>

namespace trident::gpt2 {

inline nn::ModelSpec gpt2_spec(const Gpt2Config& config) {
  using namespace trident::nn;
  config.validate();
  const std::int64_t c = config.hidden, v = config.vocab, t = config.seq;
  const double stddev = 0.02, residual_stddev = 0.02 / std::sqrt(2.0 * config.layers);
  std::vector<LayerSpec> layers;
  layers.push_back(named("", sequence({named("wte", embedding(v, c)), named("wpe", position_embedding(t, c))})));
  for (int l = 0; l < config.layers; ++l) {
    const auto attention = residual({
        named("ln_1", layer_norm(c)),
        named("attn.c_attn", normal_init(fused_linear(c, 3 * c, 3, Parallel::column), stddev)),
        causal_self_attention(c, config.heads, t),
        named("attn.c_proj", normal_init(linear(c, c, Parallel::row), residual_stddev)),
    });
    const auto mlp = residual({
        named("ln_2", layer_norm(c)),
        named("mlp.c_fc", normal_init(linear(c, 4 * c, Parallel::column), stddev)),
        gelu(),
        named("mlp.c_proj", normal_init(linear(4 * c, c, Parallel::row), residual_stddev)),
    });
    layers.push_back(named("h." + std::to_string(l), sequence({named("", attention), named("", mlp)})));
  }
  layers.push_back(named("", sequence({named("ln_f", layer_norm(c)), tied_head(v, c, "wte")})));
  return sequential(std::move(layers), Loss::cross_entropy);
}

}  // namespace trident::gpt2
