#pragma once
// How GPT-2 (spec.hpp) splits over tensor-parallel ranks, and its
// parameters under their Hugging Face names and shapes.

#include <trident/core/parameter_store.hpp>
#include <trident/gpt2/config.hpp>
#include <trident/gpt2/spec.hpp>
#include <trident/nn/parameters.hpp>
#include <trident/tensor_parallel/group.hpp>

#include <cmath>
#include <cstdint>
#include <string>

namespace trident::gpt2 {

inline std::string layer_name(int layer, const char* suffix) {
  return "h." + std::to_string(layer) + "." + suffix;
}

// How a tensor-parallel rank holds GPT-2 (Megatron's split): c_attn by heads (the Q, K and V
// columns of each head on the same rank), c_fc by columns, both c_proj by rows, wte by
// vocabulary rows (uneven when V % tp != 0); LayerNorms, wpe and the row-parallel biases
// replicated. tp_size = 1 is the one-rank model.
struct Gpt2Split {
  int tp_size = 1;
  int tp_rank = 0;
};

inline void validate_gpt2_split(const Gpt2Config& config, const Gpt2Split& split) {
  require_argument(split.tp_size >= 1 && split.tp_rank >= 0 && split.tp_rank < split.tp_size,
                   "trident::gpt2: tensor-parallel rank ", split.tp_rank, " of ", split.tp_size);
  require_argument(split.tp_size <= config.heads, "trident::gpt2: tensor parallelism over ", split.tp_size,
                   " ranks needs at least as many heads, but the model has ", config.heads);
  require_argument(config.heads % split.tp_size == 0, "trident::gpt2: ", config.heads, " heads do not divide over ",
                   split.tp_size, " tensor-parallel ranks");
  require_argument((4 * config.hidden) % split.tp_size == 0, "trident::gpt2: the MLP width 4C = ", 4 * config.hidden,
                   " does not divide over ", split.tp_size, " tensor-parallel ranks");
  require_argument(config.vocab >= split.tp_size, "trident::gpt2: a vocabulary of ", config.vocab,
                   " cannot be split over ", split.tp_size, " tensor-parallel ranks");
}

// Declares every tensor of the one-rank model in Hugging Face order (not allocated).
template <class Scalar, class MemorySpace>
void declare_gpt2_parameters(ParameterStore<Scalar, MemorySpace>& store, const Gpt2Config& config) {
  nn::declare_tensors(store, nn::model_tensors(gpt2_spec(config)), 1, 0);
}

// The unit (see Gpt2Hooks) whose backward makes a tensor's gradient final: 0 for the
// embeddings (wte's head gradient is added before), l+1 for block l, L+1 for ln_f.
inline int gpt2_unit_of(const std::string& name, const Gpt2Config& config) {
  if (name.rfind("h.", 0) == 0) return std::stoi(name.substr(2, name.find('.', 2) - 2)) + 1;
  if (name.rfind("ln_f.", 0) == 0) return config.layers + 1;
  return 0;
}

}  // namespace trident::gpt2
