#pragma once
// The global gradient norm of a tensor-parallel model, with clip_grad_norm_ semantics of the
// one-rank model: every element of the global gradient counted exactly once. Sharded tensors
// add their shards over the group; replicated ones (LayerNorm, row-parallel biases, wpe)
// count on the group's first rank only.

#include <trident/comm/collectives.hpp>
#include <trident/core/parameter_store.hpp>
#include <trident/optim/clip.hpp>
#include <trident/tensor_parallel/group.hpp>

#include <Kokkos_Core.hpp>

namespace trident::tensor_parallel {

template <class ExecutionSpace, class Scalar, class MemorySpace>
double grad_norm_squared(const ExecutionSpace& space, const ParameterStore<Scalar, MemorySpace>& store,
                         const TensorParallelGroup& group) {
  ScopedRegion region("trident::tensor_parallel::grad_norm_squared");
  if (!group.active()) return optim::sum_of_squares(space, store.grads());
  Kokkos::View<double*, Kokkos::HostSpace> sum("trident::tensor_parallel::grad_norm_squared", 1);
  for (const auto& t : store.tensors()) {
    if (t.replicated && group.rank() != 0) continue;
    sum(0) += optim::sum_of_squares(space, ParameterStore<Scalar, MemorySpace>::vector_of(store.grads(), t));
  }
  comm::allreduce(Kokkos::DefaultHostExecutionSpace(), group.comm, sum, comm::ReduceOp::sum);
  return sum(0);
}

}  // namespace trident::tensor_parallel
