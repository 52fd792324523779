#pragma once
// GPT-2's token batches for the training driver: B sequences of T token ids and their
// targets (host vectors of B*T each, as data::BatchLoader gives them) as a train::Batch of
// ids [B*T, 1] (exact in Scalar below 2^24) and target classes [B*T] in the execution space's
// memory.

#include <trident/core/error.hpp>
#include <trident/data/batches.hpp>
#include <trident/train/trainer.hpp>

#include <Kokkos_Core.hpp>

#include <cstddef>

namespace trident::gpt2 {

template <class Scalar, class ExecutionSpace>
train::Batch<Scalar, ExecutionSpace> gpt2_token_batch(const data::Batch& tokens, bool replica_share) {
  require_argument(tokens.inputs.size() == tokens.targets.size() && !tokens.inputs.empty(),
                   "trident::gpt2::gpt2_token_batch: ", tokens.inputs.size(), " tokens and ", tokens.targets.size(),
                   " targets");
  const std::size_t rows = tokens.inputs.size();
  Kokkos::View<Scalar**, Kokkos::LayoutRight, Kokkos::HostSpace> ids("trident::gpt2::ids", rows, 1);
  Kokkos::View<int*, Kokkos::HostSpace> targets("trident::gpt2::targets", rows);
  for (std::size_t i = 0; i < rows; ++i) {
    ids(i, 0) = static_cast<Scalar>(tokens.inputs[i]);
    targets(i) = tokens.targets[i];
  }
  return {train::to_device<ExecutionSpace>(ids), {{}, train::to_device<ExecutionSpace>(targets)}, replica_share};
}

}  // namespace trident::gpt2
