#pragma once
// Any model's parameters or gradients as the named global tensors of the one-rank model,
// whatever the layout: each rank places the blocks it holds where they sit in the global
// tensors, and one all-reduce over the world sums the disjoint pieces. A tensor replicated
// over the tensor-parallel group counts on its rank 0 only, a tied head's copy of a table on
// the embedding's stage only; data-parallel replicas count once (the caller passes
// `counts = false` on all but one replica).

#include <trident/comm/allreduce.hpp>
#include <trident/comm/communicator.hpp>
#include <trident/nn/model.hpp>
#include <trident/nn/parameters.hpp>

#include <Kokkos_Core.hpp>

#include <algorithm>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace trident::nn {

enum class Buffer { values, gradients };

// Every global tensor of the model's spec, on every rank of `world`, row-major, in double.
// Collective over `world`, which holds every rank of the model's layout.
template <class Scalar, class ExecutionSpace>
std::map<std::string, std::vector<double>> global_tensors(const Model<Scalar, ExecutionSpace>& model, Buffer which,
                                                          const comm::Communicator& world, bool counts = true) {
  const std::vector<TensorPlan> plans = model_tensors(model.spec());
  std::map<std::string, std::int64_t> offset_of;
  std::int64_t total = 0;
  for (const auto& p : plans) {
    offset_of[p.name] = total;
    total += p.shape[0] * (p.shape.size() == 2 ? p.shape[1] : 1);
  }
  Kokkos::View<double*, Kokkos::HostSpace> global("trident::nn::global_tensors", static_cast<std::size_t>(total));
  const auto& store = model.parameters();
  const bool tp_first = model.tensor_parallel_group().rank() == 0;
  if (counts) {
    const auto flat = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(),
                                                          which == Buffer::values ? store.values() : store.grads());
    const auto& copies = model.tied_copies();
    for (const auto& t : store.tensors()) {
      if (t.replicated && !tp_first && model.tensor_parallel_group().size() > 1) continue;
      if (std::find(copies.begin(), copies.end(), t.name) != copies.end()) continue;  // the embedding's stage counts it
      const std::int64_t local_cols = t.local_shape.size() == 2 ? t.local_shape[1] : 1;
      const std::int64_t global_cols = t.global_shape.size() == 2 ? t.global_shape[1] : 1;
      for (const auto& b : t.blocks)
        for (std::int64_t i = 0; i < b.rows; ++i)
          for (std::int64_t j = 0; j < b.cols; ++j)
            global(static_cast<std::size_t>(offset_of[t.name] + (b.global_row + i) * global_cols + b.global_col + j)) =
                static_cast<double>(
                    flat(static_cast<std::size_t>(t.offset + (b.local_row + i) * local_cols + b.local_col + j)));
    }
  }
  comm::allreduce(Kokkos::DefaultHostExecutionSpace(), world, global, comm::ReduceOp::sum);
  std::map<std::string, std::vector<double>> tensors;
  for (const auto& p : plans) {
    const std::int64_t begin = offset_of[p.name];
    const std::int64_t size = p.shape[0] * (p.shape.size() == 2 ? p.shape[1] : 1);
    tensors[p.name] = std::vector<double>(global.data() + begin, global.data() + begin + size);
  }
  return tensors;
}

}  // namespace trident::nn
