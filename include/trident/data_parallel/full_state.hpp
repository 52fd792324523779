#pragma once
// Loading the training state of a data-parallel store from a one-rank checkpoint: every rank
// reads the parameters and AdamW moments in one-rank form and keeps its own part. `like` is
// the store the engine holds (under tensor or pipeline parallelism itself a part of the
// model); the one-rank form has its tensors and layout. (Saving needs no such step: each rank
// writes its own range, DataParallel::owned_state.)

#include <trident/comm/agreement.hpp>
#include <trident/core/parameter_store.hpp>
#include <trident/data_parallel/data_parallel.hpp>
#include <trident/data_parallel/store_like.hpp>
#include <trident/optim/adamw.hpp>

#include <string>
#include <utility>

namespace trident::data_parallel {

// Collective over the engine's group: every rank calls read(store, adamw) to fill a one-rank-
// form state (a checkpoint load; if it fails on any rank, every rank throws, see
// comm::agree_on_failure, naming `what`), then keeps its own part. Returns read's result.
template <class Scalar, class ExecutionSpace, class Read>
auto scatter_full_state(DataParallel<Scalar, ExecutionSpace>& engine,
                        const ParameterStore<Scalar, typename ExecutionSpace::memory_space>& like,
                        const optim::AdamWSettings& settings, const std::string& what, Read&& read) {
  auto full = store_like(like, "trident::checkpoint");
  optim::AdamW<Scalar, typename ExecutionSpace::memory_space> adamw(full, settings);
  decltype(read(full, adamw)) result{};
  comm::agree_on_failure(engine.communicator(), what, [&] { result = read(full, adamw); });
  engine.scatter_state(full.values(), adamw.exp_avg(), adamw.exp_avg_sq());
  return result;
}

}  // namespace trident::data_parallel
