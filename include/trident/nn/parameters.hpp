#pragma once
// The parameters of a model spec as global tensors, named as PyTorch names the parameters of
// an nn.Sequential ("0.weight", "3.1.bias" for layer 1 of the residual branch at 3; a named()
// layer by its name, as "block.0.attn.weight"), and the
// shard of each that a tensor-parallel rank holds: a column-parallel linear splits its weight
// and bias by output features (each of its parts on its own: a rank holds the same heads of
// Q, K and V), a row-parallel one its weight by input features, an embedding its table by
// vocabulary rows (unevenly when the group does not divide the vocabulary).
// Initialisation is defined on the global tensors (PyTorch's nn.Linear bounds: U(-k, k),
// k = 1/sqrt(in), or N(0, stddev^2) and zero bias with normal_init; LayerNorm: ones and
// zeros; embeddings: N(0, 0.02^2) as GPT-2), so every layout starts from the same values.
// A tied head names its embedding's table: a stage holding both declares it once.

#include <trident/core/error.hpp>
#include <trident/core/parameter_store.hpp>
#include <trident/core/random.hpp>
#include <trident/nn/spec.hpp>
#include <trident/tensor_parallel/group.hpp>

#include <Kokkos_Core.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace trident::nn {

struct TensorPlan {
  std::string name;
  std::vector<std::int64_t> shape;  // global
  int split_dim = -1;               // split over the tensor-parallel group along this dimension; -1: whole
  bool weight_decay = false;
  enum class Init { uniform, normal, ones, zeros } init = Init::zeros;
  double scale = 0;        // uniform: U(-scale, scale); normal: N(0, scale^2)
  std::int64_t parts = 1;  // the split dimension is `parts` equal blocks, each split on its own
  bool tied = false;       // a tied head's view of an embedding's table
  bool table = false;      // an embedding's table, which a tied head may read
};

constexpr double embedding_stddev = 0.02;

inline void collect_tensors(const LayerSpec& spec, const std::string& prefix, std::vector<TensorPlan>& plans) {
  switch (spec.kind) {
    case LayerKind::linear: {
      const bool normal = spec.init_stddev > 0;
      const double bound = 1.0 / std::sqrt(static_cast<double>(spec.in));
      const int weight_dim = spec.parallel == Parallel::column ? 1 : spec.parallel == Parallel::row ? 0 : -1;
      const std::int64_t parts = spec.parallel == Parallel::column ? spec.parts : 1;
      plans.push_back({prefix + "weight",
                       {spec.in, spec.out},
                       weight_dim,
                       true,
                       normal ? TensorPlan::Init::normal : TensorPlan::Init::uniform,
                       normal ? spec.init_stddev : bound,
                       parts});
      if (spec.bias) {
        plans.push_back({prefix + "bias",
                         {spec.out},
                         spec.parallel == Parallel::column ? 0 : -1,
                         false,
                         normal ? TensorPlan::Init::zeros : TensorPlan::Init::uniform,
                         normal ? 0.0 : bound,
                         parts});
      }
      return;
    }
    case LayerKind::embedding:
      plans.push_back({prefix + "weight",
                       {spec.vocab, spec.out},
                       0,
                       true,
                       TensorPlan::Init::normal,
                       embedding_stddev,
                       1,
                       false,
                       true});
      return;
    case LayerKind::tied_head:  // the embedding's table, the same tensor
      plans.push_back(
          {spec.tied + ".weight", {spec.vocab, spec.in}, 0, true, TensorPlan::Init::normal, embedding_stddev, 1, true});
      return;
    case LayerKind::position_embedding:
      plans.push_back({prefix + "weight", {spec.seq, spec.out}, -1, true, TensorPlan::Init::normal, embedding_stddev});
      return;
    case LayerKind::layer_norm:
      plans.push_back({prefix + "weight", {spec.in}, -1, false, TensorPlan::Init::ones, 0});
      plans.push_back({prefix + "bias", {spec.in}, -1, false, TensorPlan::Init::zeros, 0});
      return;
    case LayerKind::residual:
    case LayerKind::sequence:
      for (std::size_t i = 0; i < spec.inner.size(); ++i)
        collect_tensors(spec.inner[i], child_prefix(prefix, spec.inner[i], i), plans);
      return;
    default:
      return;  // pointwise layers and attention hold no parameters
  }
}

// The global tensors of top-level layer `index`.
inline std::vector<TensorPlan> layer_tensors(const ModelSpec& spec, std::size_t index) {
  std::vector<TensorPlan> plans;
  collect_tensors(spec.layers[index], child_prefix("", spec.layers[index], index), plans);
  return plans;
}

// Every global tensor of the model once, in order; throws for two tensors of one name unless
// the second is a tied head's view of an embedding's table of the same shape.
inline std::vector<TensorPlan> model_tensors(const ModelSpec& spec) {
  std::vector<TensorPlan> all;
  for (std::size_t i = 0; i < spec.layers.size(); ++i) {
    for (auto& p : layer_tensors(spec, i)) {
      const auto same = std::find_if(all.begin(), all.end(), [&](const TensorPlan& q) { return q.name == p.name; });
      if (same == all.end()) {
        if (p.tied) {
          std::string tables;
          for (const auto& q : all)
            if (q.table) tables += (tables.empty() ? "'" : ", '") + q.name + "'";
          throw InvalidArgument("trident::nn: a tied head reads '" + p.name +
                                "', which no embedding before it holds (" +
                                (tables.empty() ? std::string("no embedding comes before it")
                                                : "the tables before it: " + tables + "; name the head's embedding") +
                                ")");
        }
        all.push_back(std::move(p));
        continue;
      }
      require_argument(p.tied && same->table && same->shape == p.shape, "trident::nn: two ", "tensors are named '",
                       p.name, "' (name the layers apart; a tied head names an embedding ",
                       "before it, of the same shape)");
    }
  }
  return all;
}

// Elements of the model's global tensors (a tied table once).
inline std::int64_t parameter_count(const ModelSpec& spec) {
  std::int64_t total = 0;
  for (const auto& t : model_tensors(spec)) {
    std::int64_t n = 1;
    for (auto e : t.shape) n *= e;
    total += n;
  }
  return total;
}

// A table a tied head reads, and the top-level layers of its embedding and of the head. When
// pipeline stages put them apart, the head's stage holds a copy (Model::tied_copies) and the
// two gradients must be summed after the step's backward (pipeline::TiedGradients between
// the two stages' ranks), as train::Trainer does for every tied table.
struct TiedTable {
  std::string name;
  int embedding_layer = 0, head_layer = 0;
};

inline std::vector<TiedTable> tied_tables(const ModelSpec& spec) {
  model_tensors(spec);  // every tied head reads an embedding before it
  std::vector<TiedTable> tables;
  std::map<std::string, int> layer_of_table;
  for (std::size_t i = 0; i < spec.layers.size(); ++i)
    for (const auto& p : layer_tensors(spec, i)) {
      if (p.table) layer_of_table[p.name] = static_cast<int>(i);
      if (p.tied) tables.push_back({p.name, layer_of_table.at(p.name), static_cast<int>(i)});
    }
  return tables;
}

// Declares this tensor-parallel rank's shard of each tensor: of each part along the split
// dimension, the rank's even share (see tensor_parallel::even_split), parts side by side.
// A tensor already declared (the table of an embedding a tied head reads) is skipped.
template <class Scalar, class MemorySpace>
void declare_tensors(ParameterStore<Scalar, MemorySpace>& store, const std::vector<TensorPlan>& plans, int tp_size,
                     int tp_rank) {
  for (const auto& p : plans) {
    if (store.contains(p.name)) continue;
    if (p.split_dim < 0) {
      store.declare(p.name, p.shape, p.weight_decay);
      continue;
    }
    const auto split = static_cast<std::size_t>(p.split_dim);
    require_argument(p.shape[split] % p.parts == 0 && p.shape[split] / p.parts >= tp_size, "trident::nn: '", p.name,
                     "' cannot split ", p.parts, " part(s) of ", p.shape[split], " features over ", tp_size,
                     " tensor-parallel ranks");
    const std::int64_t part_size = p.shape[split] / p.parts;
    std::vector<std::int64_t> local = p.shape;
    local[split] = 0;
    std::vector<ShardBlock> blocks;
    for (std::int64_t part = 0; part < p.parts; ++part) {
      const auto share = tensor_parallel::even_split(part_size, tp_size, tp_rank);
      ShardBlock block;
      block.rows = split == 0 ? share.count : p.shape[0];
      block.cols = split == 1 ? share.count : p.shape.size() == 2 ? p.shape[1] : 1;
      (split == 0 ? block.local_row : block.local_col) = local[split];
      (split == 0 ? block.global_row : block.global_col) = part * part_size + share.offset;
      local[split] += share.count;
      blocks.push_back(block);
    }
    store.declare(p.name, p.shape, local, blocks, p.weight_decay, tp_size == 1);
  }
}

// Fills this rank's shards with the values of the global tensors.
template <class ExecutionSpace, class Scalar, class MemorySpace>
void initialize_tensors(const ExecutionSpace& space, const ParameterStore<Scalar, MemorySpace>& store,
                        const std::vector<TensorPlan>& plans, std::uint64_t seed) {
  for (const auto& p : plans) {
    if (!store.contains(p.name)) continue;
    const auto& info = store.info(p.name);
    const auto flat = ParameterStore<Scalar, MemorySpace>::vector_of(store.values(), info);
    if (p.init == TensorPlan::Init::ones || p.init == TensorPlan::Init::zeros) {
      Kokkos::deep_copy(space, flat, Scalar(p.init == TensorPlan::Init::ones ? 1 : 0));
      continue;
    }
    const auto fill = [&](const auto& view, const GlobalSlice& slice) {
      if (p.init == TensorPlan::Init::uniform) {
        fill_uniform(space, view, random_stream(seed, p.name), -p.scale, p.scale, slice);
      } else {
        fill_normal(space, view, random_stream(seed, p.name), 0.0, p.scale, slice);
      }
    };
    for (const auto& b : info.blocks) {
      if (info.local_shape.size() == 1) {
        fill(Kokkos::subview(flat, Kokkos::make_pair(b.local_row, b.local_row + b.rows)),
             GlobalSlice{1, b.global_row, 0});
      } else {
        fill(Kokkos::subview(store.matrix(p.name), Kokkos::make_pair(b.local_row, b.local_row + b.rows),
                             Kokkos::make_pair(b.local_col, b.local_col + b.cols)),
             GlobalSlice{p.shape[1], b.global_row, b.global_col});
      }
    }
  }
}

}  // namespace trident::nn
