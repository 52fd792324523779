#pragma once
// Any model's parameters or gradients as the named global tensors of the one-rank model,
// whatever the layout: each rank places the blocks it holds where they sit in the global
// tensors, and one all-reduce over the world sums the disjoint pieces. A tensor replicated
// over the tensor-parallel group counts on its rank 0 only, a tied head's copy of a table on
// the embedding's stage only (Model::counts); data-parallel replicas count once (the caller
// passes `counts = false` on all but one replica).

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

namespace detail {

// Places the tensors a store holds, with values from `flat` (laid out like the store), at their
// global positions in `global`; only those `model.counts`.
template <class Scalar, class ExecutionSpace, class Flat>
void place_global(const Model<Scalar, ExecutionSpace>& model, const Flat& flat,
                  const std::map<std::string, std::int64_t>& offset_of,
                  Kokkos::View<double*, Kokkos::HostSpace> global) {
  const auto& store = model.parameters();
  require_argument(static_cast<std::int64_t>(flat.extent(0)) == store.size(), "trident::nn::global_tensors: the ",
                   "buffer holds ", flat.extent(0), " of the store's ", store.size(), " elements (ZeRO releases the ",
                   "full buffers between steps; ask the train::Trainer for its global tensors)");
  const auto host = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), flat);
  for (const auto& t : store.tensors()) {
    if (!model.counts(t)) continue;
    const std::int64_t local_cols = t.local_shape.size() == 2 ? t.local_shape[1] : 1;
    const std::int64_t global_cols = t.global_shape.size() == 2 ? t.global_shape[1] : 1;
    const std::int64_t base = offset_of.at(t.name);
    for (const auto& b : t.blocks)
      for (std::int64_t i = 0; i < b.rows; ++i)
        for (std::int64_t j = 0; j < b.cols; ++j)
          global(static_cast<std::size_t>(base + (b.global_row + i) * global_cols + b.global_col + j)) =
              static_cast<double>(
                  host(static_cast<std::size_t>(t.offset + (b.local_row + i) * local_cols + b.local_col + j)));
  }
}

}  // namespace detail

// Every global tensor of a spec, on every rank of `world`, row-major, in double, from this
// rank's model chunks and a buffer laid out like each chunk's store (its values, gradients, or
// AdamW moments). Collective over `world`, which holds every rank of the layout; `counts` is
// false on all data-parallel replicas but one.
template <class Scalar, class ExecutionSpace, class Flat>
std::map<std::string, std::vector<double>> global_tensors(
    const std::vector<const Model<Scalar, ExecutionSpace>*>& chunks, const std::vector<Flat>& buffers,
    const comm::Communicator& world, bool counts = true) {
  require_argument(!chunks.empty() && chunks.size() == buffers.size(), "trident::nn::global_tensors: ", chunks.size(),
                   " model chunks and ", buffers.size(), " buffers");
  const std::vector<TensorPlan> plans = model_tensors(chunks.front()->spec());
  std::map<std::string, std::int64_t> offset_of;
  std::int64_t total = 0;
  for (const auto& p : plans) {
    offset_of[p.name] = total;
    total += p.shape[0] * (p.shape.size() == 2 ? p.shape[1] : 1);
  }
  Kokkos::View<double*, Kokkos::HostSpace> global("trident::nn::global_tensors", static_cast<std::size_t>(total));
  if (counts)
    for (std::size_t c = 0; c < chunks.size(); ++c) detail::place_global(*chunks[c], buffers[c], offset_of, global);
  comm::allreduce(Kokkos::DefaultHostExecutionSpace(), world, global, comm::ReduceOp::sum);
  std::map<std::string, std::vector<double>> tensors;
  for (const auto& p : plans) {
    const std::int64_t begin = offset_of[p.name];
    const std::int64_t size = p.shape[0] * (p.shape.size() == 2 ? p.shape[1] : 1);
    tensors[p.name] = std::vector<double>(global.data() + begin, global.data() + begin + size);
  }
  return tensors;
}

// One model (the whole model, or this rank's stage), its values or gradients.
template <class Scalar, class ExecutionSpace>
std::map<std::string, std::vector<double>> global_tensors(const Model<Scalar, ExecutionSpace>& model, Buffer which,
                                                          const comm::Communicator& world, bool counts = true) {
  const auto& store = model.parameters();
  return global_tensors(std::vector<const Model<Scalar, ExecutionSpace>*>{&model},
                        std::vector{which == Buffer::values ? store.values() : store.grads()}, world, counts);
}

}  // namespace trident::nn
