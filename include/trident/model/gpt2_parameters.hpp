#pragma once
// GPT-2's parameters under their Hugging Face names and shapes, and GPT-2's initialisation:
// normal(0, 0.02) weights, residual projections scaled by 1/sqrt(2L), zero biases, unit
// LayerNorm gains. Values come from the layout-independent generator, keyed by name.

#include <trident/core/parameter_store.hpp>
#include <trident/core/random.hpp>
#include <trident/model/gpt2_config.hpp>
#include <trident/pipeline/partition.hpp>
#include <trident/tensor_parallel/group.hpp>

#include <cmath>
#include <cstdint>
#include <string>

namespace trident::model {

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
                   "trident::model: tensor-parallel rank ", split.tp_rank, " of ", split.tp_size);
  require_argument(split.tp_size <= config.heads, "trident::model: tensor parallelism over ", split.tp_size,
                   " ranks needs at least as many heads, but the model has ", config.heads);
  require_argument(config.heads % split.tp_size == 0, "trident::model: ", config.heads, " heads do not divide over ",
                   split.tp_size, " tensor-parallel ranks");
  require_argument((4 * config.hidden) % split.tp_size == 0, "trident::model: the MLP width 4C = ", 4 * config.hidden,
                   " does not divide over ", split.tp_size, " tensor-parallel ranks");
  require_argument(config.vocab >= split.tp_size, "trident::model: a vocabulary of ", config.vocab,
                   " cannot be split over ", split.tp_size, " tensor-parallel ranks");
}

// This rank's vocabulary rows of wte: [offset, offset + count).
inline tensor_parallel::Range gpt2_vocab_range(const Gpt2Config& config, const Gpt2Split& split) {
  return tensor_parallel::even_split(config.vocab, split.tp_size, split.tp_rank);
}

// The part of GPT-2 a pipeline stage holds (see pipeline/partition.hpp): blocks
// [first_block, end_block) under their global names h.{l}, wte and wpe on the first stage, ln_f
// on the last. The head is tied to the embedding, so the last stage holds a copy of wte too
// (initialised by name to the same values; the pipeline sums the copies' gradients).
using Gpt2Stage = pipeline::StageBlocks;

inline Gpt2Stage whole_gpt2(const Gpt2Config& config) {
  return Gpt2Stage{0, config.layers, true, true};
}

inline bool is_whole_gpt2(const Gpt2Config& config, const Gpt2Stage& stage) {
  return stage.first_block == 0 && stage.end_block == config.layers;
}

inline void validate_gpt2_stage(const Gpt2Config& config, const Gpt2Stage& stage) {
  require_argument(stage.first_block >= 0 && stage.first_block < stage.end_block && stage.end_block <= config.layers,
                   "trident::model: a stage of blocks [", stage.first_block, ", ", stage.end_block,
                   ") is not a non-empty range of the model's L = ", config.layers, " blocks");
  const bool embedding_ok = stage.holds_embedding == (stage.first_block == 0);
  const bool head_ok = stage.holds_head == (stage.end_block == config.layers);
  require_argument(embedding_ok && head_ok, "trident::model: the stage of blocks [", stage.first_block, ", ",
                   stage.end_block, ") must hold the embedding exactly when it starts at block 0 and the head ",
                   "exactly when it ends at block L = ", config.layers, " (holds_embedding = ", stage.holds_embedding,
                   ", holds_head = ", stage.holds_head, ")");
}

// Declares every tensor of the stage in Hugging Face order, as the shard this rank holds.
template <class Scalar, class MemorySpace>
void declare_gpt2_parameters(ParameterStore<Scalar, MemorySpace>& store, const Gpt2Config& config,
                             const Gpt2Split& split, const Gpt2Stage& stage) {
  validate_gpt2_split(config, split);
  validate_gpt2_stage(config, stage);
  const std::int64_t c = config.hidden, t = config.seq, tp = split.tp_size, r = split.tp_rank;
  const std::int64_t cl = c / tp, fl = 4 * c / tp;
  const auto vocab = gpt2_vocab_range(config, split);
  auto whole = [&](const std::string& name, std::vector<std::int64_t> shape, bool decay) {
    store.declare(name, shape, decay);
  };
  auto rows = [&](const std::string& name, std::vector<std::int64_t> global, std::int64_t offset, std::int64_t count,
                  bool decay) {
    std::vector<std::int64_t> local = global;
    local[0] = count;
    const std::int64_t cols = global.size() == 2 ? global[1] : 1;
    store.declare(name, global, local, {ShardBlock{0, 0, offset, 0, count, cols}}, decay, tp == 1);
  };
  // Per-head split of [Q | K | V] columns (3 blocks of width cl), for the weight and the bias.
  auto heads = [&](const std::string& name, bool matrix) {
    std::vector<ShardBlock> blocks;
    for (std::int64_t part = 0; part < 3; ++part) {
      if (matrix) {
        blocks.push_back({0, part * cl, 0, part * c + r * cl, c, cl});
      } else {
        blocks.push_back({part * cl, 0, part * c + r * cl, 0, cl, 1});
      }
    }
    if (matrix) {
      store.declare(name, {c, 3 * c}, {c, 3 * cl}, blocks, true, tp == 1);
    } else {
      store.declare(name, {3 * c}, {3 * cl}, blocks, false, tp == 1);
    }
  };
  auto columns = [&](const std::string& name, std::int64_t in, std::int64_t out, std::int64_t width) {
    store.declare(name, {in, out}, {in, width}, {ShardBlock{0, 0, 0, r * width, in, width}}, true, tp == 1);
  };
  // wte: the embedding on the first stage, the tied head's copy on the last.
  if (stage.holds_embedding || stage.holds_head) rows("wte.weight", {config.vocab, c}, vocab.offset, vocab.count, true);
  if (stage.holds_embedding) whole("wpe.weight", {t, c}, true);
  for (int l = stage.first_block; l < stage.end_block; ++l) {
    whole(layer_name(l, "ln_1.weight"), {c}, false);
    whole(layer_name(l, "ln_1.bias"), {c}, false);
    heads(layer_name(l, "attn.c_attn.weight"), true);
    heads(layer_name(l, "attn.c_attn.bias"), false);
    rows(layer_name(l, "attn.c_proj.weight"), {c, c}, r * cl, cl, true);
    whole(layer_name(l, "attn.c_proj.bias"), {c}, false);
    whole(layer_name(l, "ln_2.weight"), {c}, false);
    whole(layer_name(l, "ln_2.bias"), {c}, false);
    columns(layer_name(l, "mlp.c_fc.weight"), c, 4 * c, fl);
    rows(layer_name(l, "mlp.c_fc.bias"), {4 * c}, r * fl, fl, false);
    rows(layer_name(l, "mlp.c_proj.weight"), {4 * c, c}, r * fl, fl, true);
    whole(layer_name(l, "mlp.c_proj.bias"), {c}, false);
  }
  if (!stage.holds_head) return;
  whole("ln_f.weight", {c}, false);
  whole("ln_f.bias", {c}, false);
}

template <class Scalar, class MemorySpace>
void declare_gpt2_parameters(ParameterStore<Scalar, MemorySpace>& store, const Gpt2Config& config,
                             const Gpt2Split& split = {}) {
  declare_gpt2_parameters(store, config, split, whole_gpt2(config));
}

// The unit (see Gpt2Hooks) whose backward makes a tensor's gradient final: 0 for the
// embeddings (wte's head gradient is added before), l+1 for block l, L+1 for ln_f.
inline int gpt2_unit_of(const std::string& name, const Gpt2Config& config) {
  if (name.rfind("h.", 0) == 0) return std::stoi(name.substr(2, name.find('.', 2) - 2)) + 1;
  if (name.rfind("ln_f.", 0) == 0) return config.layers + 1;
  return 0;
}

inline bool is_residual_projection(const std::string& name) {
  auto ends_with = [&](const std::string& suffix) {
    return name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  return ends_with("attn.c_proj.weight") || ends_with("mlp.c_proj.weight");
}

inline bool is_layernorm_gain(const std::string& name) {
  return name.find("ln_") != std::string::npos && name.size() > 7 && name.compare(name.size() - 7, 7, ".weight") == 0;
}

// GPT-2 initialisation of every tensor in the store: each shard fills its blocks with the
// values of its slice of the global tensor.
template <class ExecutionSpace, class Scalar, class MemorySpace>
void initialize_gpt2_parameters(const ExecutionSpace& space, const ParameterStore<Scalar, MemorySpace>& store,
                                const Gpt2Config& config, std::uint64_t seed) {
  const double residual_std = 0.02 / std::sqrt(2.0 * config.layers);
  for (const auto& t : store.tensors()) {
    auto flat = ParameterStore<Scalar, MemorySpace>::vector_of(store.values(), t);
    if (is_layernorm_gain(t.name)) {
      Kokkos::deep_copy(space, flat, Scalar(1));
    } else if (t.global_shape.size() == 1) {
      Kokkos::deep_copy(space, flat, Scalar(0));
    } else {
      const double stddev = is_residual_projection(t.name) ? residual_std : 0.02;
      const auto matrix = store.matrix(t.name);
      for (const auto& b : t.blocks) {
        auto block = Kokkos::subview(matrix, Kokkos::make_pair(b.local_row, b.local_row + b.rows),
                                     Kokkos::make_pair(b.local_col, b.local_col + b.cols));
        fill_normal(space, block, random_stream(seed, t.name), 0.0, stddev,
                    GlobalSlice{t.global_shape[1], b.global_row, b.global_col});
      }
    }
  }
}

}  // namespace trident::model
