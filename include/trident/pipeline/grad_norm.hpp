#pragma once
// The global gradient norm of a model cut into pipeline stages (each stage possibly split over
// a tensor-parallel group), with the one-rank model's clip_grad_norm_ semantics: every element
// of every global tensor counted once. A stage adds its own tensors, leaving out the copies of
// tied tensors another stage counts (a tied head's copy of a table); tensors replicated over
// the tensor-parallel group count on its first rank only; the partial sums are added over
// both groups.

#include <trident/comm/allreduce.hpp>
#include <trident/comm/communicator.hpp>
#include <trident/core/parameter_store.hpp>
#include <trident/core/profiling.hpp>
#include <trident/optim/clip.hpp>

#include <Kokkos_Core.hpp>

#include <string>
#include <vector>

namespace trident::pipeline {

// One model chunk's parameters and the tied copies it holds that another stage counts.
template <class Scalar, class MemorySpace>
struct StageGradients {
  const ParameterStore<Scalar, MemorySpace>* store = nullptr;
  std::vector<std::string> not_counted;
};

// The squared norm, the same on every rank of `pp` and `tp`. Collective over both; `tp` may be
// a communicator of one rank (no tensor parallelism).
template <class ExecutionSpace, class Scalar, class MemorySpace>
double grad_norm_squared(const ExecutionSpace& space, const std::vector<StageGradients<Scalar, MemorySpace>>& chunks,
                         const comm::Communicator& pp, const comm::Communicator& tp) {
  ScopedRegion region("trident::pipeline::grad_norm_squared");
  using store_type = ParameterStore<Scalar, MemorySpace>;
  Kokkos::View<double*, Kokkos::HostSpace> sum("trident::pipeline::grad_norm_squared", 1);
  for (const auto& chunk : chunks) {
    require_argument(chunk.store != nullptr, "trident::pipeline::grad_norm_squared: a chunk without parameters");
    for (const auto& t : chunk.store->tensors()) {
      if (t.replicated && tp.rank() != 0) continue;
      bool skip = false;
      for (const auto& name : chunk.not_counted) skip = skip || name == t.name;
      if (!skip) sum(0) += optim::sum_of_squares(space, store_type::vector_of(chunk.store->grads(), t));
    }
  }
  const Kokkos::DefaultHostExecutionSpace host;
  if (tp.size() > 1) comm::allreduce(host, tp, sum, comm::ReduceOp::sum);
  if (pp.size() > 1) comm::allreduce(host, pp, sum, comm::ReduceOp::sum);
  return sum(0);
}

}  // namespace trident::pipeline
