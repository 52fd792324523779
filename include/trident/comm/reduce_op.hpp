#pragma once
// The reductions trident's collectives perform, and their MPI operations.

#include <mpi.h>

namespace trident {
namespace comm {

enum class ReduceOp : int { sum, max, min };

inline const char* reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum:
      return "sum";
    case ReduceOp::max:
      return "max";
    case ReduceOp::min:
      return "min";
  }
  return "unknown";
}

namespace Impl {

inline MPI_Op mpi_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::max:
      return MPI_MAX;
    case ReduceOp::min:
      return MPI_MIN;
    case ReduceOp::sum:
      break;
  }
  return MPI_SUM;
}

}  // namespace Impl
}  // namespace comm
}  // namespace trident
