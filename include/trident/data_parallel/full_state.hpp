#pragma once
// The training state of a data-parallel store in one-rank form, for checkpoints: parameters
// and AdamW moments gathered from every rank's shard onto one rank, and read back into each
// rank's shard. `like` is the store the engine holds (under tensor or pipeline parallelism
// itself a part of the model); the one-rank form has its tensors and layout.

#include <trident/core/parameter_store.hpp>
#include <trident/data_parallel/collective_errors.hpp>
#include <trident/data_parallel/data_parallel.hpp>
#include <trident/data_parallel/store_like.hpp>
#include <trident/optim/adamw.hpp>

#include <optional>
#include <string>
#include <utility>

namespace trident::data_parallel {

template <class Scalar, class MemorySpace>
struct FullState {
  ParameterStore<Scalar, MemorySpace> store;               // empty except on the root
  std::optional<optim::AdamW<Scalar, MemorySpace>> adamw;  // the moments, on the root
};

// Collective over the engine's group: `root` gets the whole state; the other ranks an empty one.
template <class Scalar, class ExecutionSpace>
FullState<Scalar, typename ExecutionSpace::memory_space> gather_full_state(
    DataParallel<Scalar, ExecutionSpace>& engine,
    const ParameterStore<Scalar, typename ExecutionSpace::memory_space>& like, const optim::AdamWSettings& settings,
    int root = 0) {
  FullState<Scalar, typename ExecutionSpace::memory_space> state;
  const bool mine = engine.communicator().rank() == root;
  if (mine) {
    state.store = store_like(like, "trident::checkpoint");
    state.adamw.emplace(state.store, settings);
  }
  const auto values = state.store.values();
  engine.gather_state(root, values, mine ? state.adamw->exp_avg() : values, mine ? state.adamw->exp_avg_sq() : values);
  return state;
}

// Collective over the engine's group: every rank calls read(store, adamw) to fill a one-rank-
// form state (a checkpoint load; if it fails on any rank, every rank throws, see
// on_every_rank_or_none, naming `what`), then keeps its own part. Returns read's result.
template <class Scalar, class ExecutionSpace, class Read>
auto scatter_full_state(DataParallel<Scalar, ExecutionSpace>& engine,
                        const ParameterStore<Scalar, typename ExecutionSpace::memory_space>& like,
                        const optim::AdamWSettings& settings, const std::string& what, Read&& read) {
  auto full = store_like(like, "trident::checkpoint");
  optim::AdamW<Scalar, typename ExecutionSpace::memory_space> adamw(full, settings);
  decltype(read(full, adamw)) result{};
  on_every_rank_or_none(engine.communicator(), what, [&] { result = read(full, adamw); });
  engine.scatter_state(full.values(), adamw.exp_avg(), adamw.exp_avg_sq());
  return result;
}

}  // namespace trident::data_parallel
