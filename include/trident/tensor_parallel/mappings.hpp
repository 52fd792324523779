#pragma once
// Megatron's conjugate communication pairs (mappings.py), one type each with forward and
// backward side by side. A tensor-parallel layer is a one-rank layer between an "enter"
// and a "leave" mapping; with a group of one rank every mapping does nothing.
//
//   CopyToRegion            forward: identity            backward: allreduce
//   ReduceFromRegion        forward: allreduce           backward: identity
//   GatherFromSequence      forward: all-gather rows     backward: reduce-scatter rows
//   ReduceScatterToSequence forward: reduce-scatter rows backward: all-gather rows
//
// EnterRegion / LeaveRegion pick the pair for the group: without sequence parallelism the
// full rows are on every rank (copy / reduce); with it each rank holds N/tp rows outside the
// region (gather / reduce-scatter).

#include <trident/comm/collectives.hpp>
#include <trident/core/profiling.hpp>
#include <trident/tensor_parallel/group.hpp>

namespace trident::tensor_parallel {

struct CopyToRegion {
  template <class ExecutionSpace, class View>
  static void forward(const ExecutionSpace&, const TensorParallelGroup&, const View&) {}
  template <class ExecutionSpace, class View>
  static void backward(const ExecutionSpace& space, const TensorParallelGroup& group, const View& grad) {
    if (group.active()) comm::allreduce(space, group.comm, grad, comm::ReduceOp::sum);
  }
};

struct ReduceFromRegion {
  template <class ExecutionSpace, class View>
  static void forward(const ExecutionSpace& space, const TensorParallelGroup& group, const View& partial) {
    if (group.active()) comm::allreduce(space, group.comm, partial, comm::ReduceOp::sum);
  }
  template <class ExecutionSpace, class View>
  static void backward(const ExecutionSpace&, const TensorParallelGroup&, const View&) {}
};

struct GatherFromSequence {
  template <class ExecutionSpace, class LocalView, class FullView>
  static void forward(const ExecutionSpace& space, const TensorParallelGroup& group, const LocalView& local,
                      const FullView& full) {
    comm::allgather(space, group.comm, local, full);
  }
  template <class ExecutionSpace, class FullView, class LocalView>
  static void backward(const ExecutionSpace& space, const TensorParallelGroup& group, const FullView& full_grad,
                       const LocalView& local_grad) {
    comm::reduce_scatter(space, group.comm, full_grad, local_grad, comm::ReduceOp::sum);
  }
};

struct ReduceScatterToSequence {
  template <class ExecutionSpace, class FullView, class LocalView>
  static void forward(const ExecutionSpace& space, const TensorParallelGroup& group, const FullView& partial,
                      const LocalView& local) {
    comm::reduce_scatter(space, group.comm, partial, local, comm::ReduceOp::sum);
  }
  template <class ExecutionSpace, class LocalView, class FullView>
  static void backward(const ExecutionSpace& space, const TensorParallelGroup& group, const LocalView& local_grad,
                       const FullView& full_grad) {
    comm::allgather(space, group.comm, local_grad, full_grad);
  }
};

// Into a column-parallel layer: `local` rows (N/tp with sequence parallelism, else N) become
// the `full` N rows the layer reads (without sequence parallelism `full` is `local` itself).
struct EnterRegion {
  template <class ExecutionSpace, class LocalView, class FullView>
  static void forward(const ExecutionSpace& space, const TensorParallelGroup& group, const LocalView& local,
                      const FullView& full) {
    ScopedRegion region("trident::tensor_parallel::enter_forward");
    if (group.sequence_parallel && group.active()) {
      GatherFromSequence::forward(space, group, local, full);
    } else {
      CopyToRegion::forward(space, group, full);
    }
  }
  // The gradient of the full rows (partial on each rank) becomes the gradient of the local rows.
  template <class ExecutionSpace, class FullView, class LocalView>
  static void backward(const ExecutionSpace& space, const TensorParallelGroup& group, const FullView& full_grad,
                       const LocalView& local_grad) {
    ScopedRegion region("trident::tensor_parallel::enter_backward");
    if (group.sequence_parallel && group.active()) {
      GatherFromSequence::backward(space, group, full_grad, local_grad);
    } else {
      CopyToRegion::backward(space, group, full_grad);
    }
  }
};

// Out of a row-parallel layer: the partial sums of all N rows become the local rows.
struct LeaveRegion {
  template <class ExecutionSpace, class FullView, class LocalView>
  static void forward(const ExecutionSpace& space, const TensorParallelGroup& group, const FullView& partial,
                      const LocalView& local) {
    ScopedRegion region("trident::tensor_parallel::leave_forward");
    if (group.sequence_parallel && group.active()) {
      ReduceScatterToSequence::forward(space, group, partial, local);
    } else {
      ReduceFromRegion::forward(space, group, partial);
    }
  }
  template <class ExecutionSpace, class LocalView, class FullView>
  static void backward(const ExecutionSpace& space, const TensorParallelGroup& group, const LocalView& local_grad,
                       const FullView& full_grad) {
    ScopedRegion region("trident::tensor_parallel::leave_backward");
    if (group.sequence_parallel && group.active()) {
      ReduceScatterToSequence::backward(space, group, local_grad, full_grad);
    } else {
      ReduceFromRegion::backward(space, group, full_grad);
    }
  }
};

}  // namespace trident::tensor_parallel
