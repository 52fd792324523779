#pragma once
// The reductions trident's collectives perform, and their MPI operations.

#include <trident/core/half_precision.hpp>

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

// op(a, b) for one pair of elements. 16-bit floats are combined in float and rounded back, as
// NCCL reduces them.
template <class T>
KOKKOS_INLINE_FUNCTION T reduce_pair(ReduceOp op, const T& a, const T& b) {
  if constexpr (is_half_precision_v<T>) {
    const float x = static_cast<float>(a), y = static_cast<float>(b);
    return op == ReduceOp::sum ? T(x + y) : op == ReduceOp::max ? (x < y ? b : a) : (y < x ? b : a);
  } else {
    return op == ReduceOp::sum ? a + b : op == ReduceOp::max ? (a < b ? b : a) : (b < a ? b : a);
  }
}

// MPI has no reduction of 16-bit floats: this is theirs (inout = inout op in).
template <class T, ReduceOp Op>
void reduce_half_precision(void* in, void* inout, int* length, MPI_Datatype*) {
  const T* from = static_cast<const T*>(in);
  T* into = static_cast<T*>(inout);
  for (int i = 0; i < *length; ++i) into[i] = reduce_pair(Op, into[i], from[i]);
}

// One MPI operation per type and reduction, created on first use (after MPI_Init) and kept for
// the process.
template <class T, ReduceOp Op>
MPI_Op half_precision_op() {
  static const MPI_Op op = [] {
    MPI_Op created = MPI_OP_NULL;
    MPI_Op_create(&reduce_half_precision<T, Op>, 1, &created);
    return created;
  }();
  return op;
}

// The MPI operation reducing elements of type T.
template <class T>
MPI_Op mpi_op(ReduceOp op) {
  if constexpr (is_half_precision_v<T>) {
    switch (op) {
      case ReduceOp::max:
        return half_precision_op<T, ReduceOp::max>();
      case ReduceOp::min:
        return half_precision_op<T, ReduceOp::min>();
      case ReduceOp::sum:
        break;
    }
    return half_precision_op<T, ReduceOp::sum>();
  } else {
    return mpi_op(op);
  }
}

}  // namespace Impl
}  // namespace comm
}  // namespace trident
