#pragma once
// The parameters of a model spec as global tensors, named as PyTorch names the parameters of
// an nn.Sequential ("0.weight", "3.1.bias" for layer 1 of the residual branch at 3), and the
// shard of each that a tensor-parallel rank holds: a column-parallel linear splits its weight
// and bias by output features, a row-parallel one its weight by input features.
// Initialisation is defined on the global tensors (PyTorch's nn.Linear bounds: U(-k, k),
// k = 1/sqrt(in); LayerNorm: ones and zeros), so every layout starts from the same values.

#include <trident/core/error.hpp>
#include <trident/core/parameter_store.hpp>
#include <trident/core/random.hpp>
#include <trident/nn/spec.hpp>

#include <Kokkos_Core.hpp>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace trident::nn {

struct TensorPlan {
  std::string name;
  std::vector<std::int64_t> shape;  // global
  int split_dim = -1;               // split over the tensor-parallel group along this dimension; -1: whole
  bool weight_decay = false;
  enum class Init { uniform, ones, zeros } init = Init::zeros;
  double bound = 0;  // uniform: U(-bound, bound)
};

inline void collect_tensors(const LayerSpec& spec, const std::string& prefix, std::vector<TensorPlan>& plans) {
  switch (spec.kind) {
    case LayerKind::linear: {
      const double bound = 1.0 / std::sqrt(static_cast<double>(spec.in));
      const int weight_dim = spec.parallel == Parallel::column ? 1 : spec.parallel == Parallel::row ? 0 : -1;
      plans.push_back({prefix + "weight", {spec.in, spec.out}, weight_dim, true, TensorPlan::Init::uniform, bound});
      if (spec.bias) {
        plans.push_back({prefix + "bias",
                         {spec.out},
                         spec.parallel == Parallel::column ? 0 : -1,
                         false,
                         TensorPlan::Init::uniform,
                         bound});
      }
      return;
    }
    case LayerKind::layer_norm:
      plans.push_back({prefix + "weight", {spec.in}, -1, false, TensorPlan::Init::ones, 0});
      plans.push_back({prefix + "bias", {spec.in}, -1, false, TensorPlan::Init::zeros, 0});
      return;
    case LayerKind::residual:
      for (std::size_t i = 0; i < spec.inner.size(); ++i)
        collect_tensors(spec.inner[i], prefix + std::to_string(i) + ".", plans);
      return;
    default:
      return;  // pointwise layers hold no parameters
  }
}

// The global tensors of top-level layer `index`.
inline std::vector<TensorPlan> layer_tensors(const ModelSpec& spec, std::size_t index) {
  std::vector<TensorPlan> plans;
  collect_tensors(spec.layers[index], std::to_string(index) + ".", plans);
  return plans;
}

// Declares this tensor-parallel rank's shard of each tensor.
template <class Scalar, class MemorySpace>
void declare_tensors(ParameterStore<Scalar, MemorySpace>& store, const std::vector<TensorPlan>& plans, int tp_size,
                     int tp_rank) {
  for (const auto& p : plans) {
    if (p.split_dim < 0) {
      store.declare(p.name, p.shape, p.weight_decay);
      continue;
    }
    const auto split = static_cast<std::size_t>(p.split_dim);
    require_argument(p.shape[split] % tp_size == 0, "trident::nn: '", p.name, "' splits ", p.shape[split],
                     " features over ", tp_size, " tensor-parallel ranks, which does not divide them");
    std::vector<std::int64_t> local = p.shape;
    local[split] /= tp_size;
    ShardBlock block;
    block.rows = local[0];
    block.cols = local.size() == 2 ? local[1] : 1;
    (split == 0 ? block.global_row : block.global_col) = tp_rank * local[split];
    store.declare(p.name, p.shape, local, {block}, p.weight_decay, tp_size == 1);
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
    if (p.init != TensorPlan::Init::uniform) {
      Kokkos::deep_copy(space, flat, Scalar(p.init == TensorPlan::Init::ones ? 1 : 0));
      continue;
    }
    const auto& b = info.blocks.at(0);
    if (info.local_shape.size() == 1) {
      fill_uniform(space, flat, random_stream(seed, p.name), -p.bound, p.bound, GlobalSlice{1, b.global_row, 0});
    } else {
      fill_uniform(space, store.matrix(p.name), random_stream(seed, p.name), -p.bound, p.bound,
                   GlobalSlice{p.shape[1], b.global_row, b.global_col});
    }
  }
}

}  // namespace trident::nn
