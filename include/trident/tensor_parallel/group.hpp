#pragma once
// The tensor-parallel group an operator is split over, and how things are divided in it.

#include <trident/comm/communicator.hpp>
#include <trident/core/error.hpp>

#include <mpi.h>

#include <cstdint>

namespace trident::tensor_parallel {

struct TensorParallelGroup {
  comm::Communicator comm;  // the ranks an operator is split over; size 1 = no tensor parallelism
  // Korthikanti et al. 2022: LayerNorm, residual and embedding-output regions are sharded
  // along the (batch*sequence) rows; allreduces become reduce-scatter + all-gather pairs.
  bool sequence_parallel = false;

  int size() const { return comm.valid() ? comm.size() : 1; }
  int rank() const { return comm.valid() ? comm.rank() : 0; }
  bool active() const { return size() > 1; }

  // A group of one rank: the one-rank model.
  static TensorParallelGroup single() { return {comm::Communicator(MPI_COMM_SELF, "tp"), false}; }
};

// Part `index` of `total` items split over `parts` as evenly as possible: the first
// total % parts parts get one more. Returns {offset, count}.
struct Range {
  std::int64_t offset = 0;
  std::int64_t count = 0;
};

inline Range even_split(std::int64_t total, int parts, int index) {
  require_argument(parts >= 1 && index >= 0 && index < parts, "trident::tensor_parallel::even_split: part ", index,
                   " of ", parts);
  const std::int64_t base = total / parts, extra = total % parts;
  return {index * base + (index < extra ? index : extra), base + (index < extra ? 1 : 0)};
}

}  // namespace trident::tensor_parallel
