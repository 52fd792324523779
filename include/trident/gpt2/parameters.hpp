#pragma once
// How GPT-2 (gpt2_spec.hpp) splits over tensor-parallel ranks and pipeline stages, and its
// parameters under their Hugging Face names and shapes.

#include <trident/core/parameter_store.hpp>
#include <trident/gpt2/config.hpp>
#include <trident/gpt2/spec.hpp>
#include <trident/nn/model.hpp>
#include <trident/nn/parameters.hpp>
#include <trident/pipeline/partition.hpp>
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

// The part of GPT-2 a pipeline stage holds (see pipeline/partition.hpp): blocks
// [first_block, end_block) under their global names h.{l}, wte and wpe on the first stage, ln_f
// on the last. The head is tied to the embedding, so the last stage holds a copy of wte too
// (initialised by name to the same values; the pipeline sums the copies' gradients).
using Gpt2Stage = pipeline::StageBlocks;

inline Gpt2Stage whole_gpt2(const Gpt2Config& config) {
  return Gpt2Stage{0, config.layers, true, true};
}

inline void validate_gpt2_stage(const Gpt2Config& config, const Gpt2Stage& stage) {
  require_argument(stage.first_block >= 0 && stage.first_block < stage.end_block && stage.end_block <= config.layers,
                   "trident::gpt2: a stage of blocks [", stage.first_block, ", ", stage.end_block,
                   ") is not a non-empty range of the model's L = ", config.layers, " blocks");
  const bool embedding_ok = stage.holds_embedding == (stage.first_block == 0);
  const bool head_ok = stage.holds_head == (stage.end_block == config.layers);
  require_argument(embedding_ok && head_ok, "trident::gpt2: the stage of blocks [", stage.first_block, ", ",
                   stage.end_block, ") must hold the embedding exactly when it starts at block 0 and the head ",
                   "exactly when it ends at block L = ", config.layers, " (holds_embedding = ", stage.holds_embedding,
                   ", holds_head = ", stage.holds_head, ")");
}

// The top-level layers of gpt2_spec a stage holds: 0 the embeddings, l + 1 block l, L + 1
// the head.
inline nn::StageRange gpt2_layers_of(const Gpt2Config& config, const Gpt2Stage& stage) {
  validate_gpt2_stage(config, stage);
  return nn::StageRange{stage.holds_embedding ? 0 : stage.first_block + 1,
                        stage.holds_head ? config.layers + 2 : stage.end_block + 1};
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
