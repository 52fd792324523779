#pragma once
// Cross-entropy over a vocabulary split across the tensor-parallel group (Megatron's
// vocab_parallel_cross_entropy): each rank holds the logits of its vocabulary slice only;
// the row maximum and the sums of exponentials and target logits are reduced over the group,
// so the full logits never exist on one rank. Fused with the loss gradient, written in place.

#include <trident/comm/collectives.hpp>
#include <trident/core/error.hpp>
#include <trident/core/profiling.hpp>
#include <trident/ops/detail/launch.hpp>
#include <trident/tensor_parallel/group.hpp>

#include <Kokkos_Core.hpp>

#include <cstdint>

namespace trident::tensor_parallel {

namespace detail {

// Row maximum of the local logits (rows [n] of [N, Vl]).
template <class LogitView, class StatView>
struct LocalRowMax {
  LogitView m_logits;
  StatView m_max;
  std::int64_t m_cols;
  template <class Row>
  KOKKOS_FUNCTION void operator()(const std::int64_t n, const Row& row) const {
    const auto value = row.max(m_cols, [&](std::int64_t v) { return m_logits(n, v); });
    row.single([&]() { m_max(n) = value; });
  }
};

// Sum of exp(logit - max) over the local slice, and the target's logit if this rank owns it.
template <class LogitView, class TargetView, class StatView>
struct LocalSums {
  LogitView m_logits;
  TargetView m_targets;
  StatView m_max, m_sum_exp, m_target_logit;
  std::int64_t m_cols, m_vocab_offset;
  template <class Row>
  KOKKOS_FUNCTION void operator()(const std::int64_t n, const Row& row) const {
    using Scalar = typename StatView::non_const_value_type;
    const Scalar shift = m_max(n);
    const Scalar sum = row.sum(m_cols, [&](std::int64_t v) { return ops::detail::fast_exp(m_logits(n, v) - shift); });
    row.single([&]() {
      const std::int64_t t = static_cast<std::int64_t>(m_targets(n)) - m_vocab_offset;
      m_sum_exp(n) = sum;
      m_target_logit(n) = (t >= 0 && t < m_cols) ? m_logits(n, t) : Scalar(0);
    });
  }
};

// loss = log(sum exp) + max - target logit; d(logits) = scale * (softmax - onehot), in place.
template <class LogitView, class TargetView, class StatView>
struct LossAndGradient {
  LogitView m_logits;
  TargetView m_targets;
  StatView m_max, m_sum_exp, m_target_logit, m_losses;
  std::int64_t m_cols, m_vocab_offset;
  typename StatView::non_const_value_type m_scale;
  template <class Row>
  KOKKOS_FUNCTION void operator()(const std::int64_t n, const Row& row) const {
    using Scalar = typename StatView::non_const_value_type;
    const Scalar shift = m_max(n);
    const Scalar inv_sum = Scalar(1) / m_sum_exp(n);
    const std::int64_t t = static_cast<std::int64_t>(m_targets(n)) - m_vocab_offset;
    row.for_each(m_cols, [&](std::int64_t v) {
      const Scalar p = ops::detail::fast_exp(m_logits(n, v) - shift) * inv_sum;
      m_logits(n, v) = m_scale * (p - (v == t ? Scalar(1) : Scalar(0)));
    });
    row.single([&]() { m_losses(n) = math::log(m_sum_exp(n)) + shift - m_target_logit(n); });
  }
};

}  // namespace detail

// Statistics of the rows, reduced over the group: scratch a caller keeps between steps.
template <class Scalar, class MemorySpace>
struct VocabParallelScratch {
  Kokkos::View<Scalar*, MemorySpace> max;
  Kokkos::View<Scalar**, Kokkos::LayoutRight, MemorySpace> sums;  // [2, N]: sum of exp, target logit
  VocabParallelScratch() = default;
  explicit VocabParallelScratch(std::int64_t rows)
      : max("trident::tensor_parallel::ce_max", static_cast<std::size_t>(rows)),
        sums("trident::tensor_parallel::ce_sums", 2, static_cast<std::size_t>(rows)) {}
};

// losses[n] (every rank gets all N) and, in place of `logits` [N, Vl] (this rank's columns
// [vocab_offset, vocab_offset + Vl) of the vocabulary), scale * d(loss)/d(logits).
template <class ExecutionSpace, class LossView, class LogitView, class TargetView, class Scalar, class MemorySpace>
void vocab_parallel_cross_entropy_forward_backward(const ExecutionSpace& space, const TensorParallelGroup& group,
                                                   const LossView& losses, const LogitView& logits,
                                                   const TargetView& targets, std::int64_t vocab_offset,
                                                   VocabParallelScratch<Scalar, MemorySpace>& scratch, Scalar scale) {
  ScopedRegion region("trident::tensor_parallel::vocab_parallel_cross_entropy");
  const auto rows = static_cast<std::int64_t>(logits.extent(0));
  const auto cols = static_cast<std::int64_t>(logits.extent(1));
  require_argument(
      static_cast<std::int64_t>(losses.extent(0)) == rows && static_cast<std::int64_t>(targets.extent(0)) == rows,
      "trident::tensor_parallel::vocab_parallel_cross_entropy: ", rows, " rows of logits but ", losses.extent(0),
      " losses and ", targets.extent(0), " targets");
  require_argument(cols > 0, "trident::tensor_parallel::vocab_parallel_cross_entropy: an empty vocabulary slice");
  if (static_cast<std::int64_t>(scratch.max.extent(0)) != rows)
    scratch = VocabParallelScratch<Scalar, MemorySpace>(rows);
  auto sum_exp = Kokkos::subview(scratch.sums, 0, Kokkos::ALL);
  auto target_logit = Kokkos::subview(scratch.sums, 1, Kokkos::ALL);
  using Stat = Kokkos::View<Scalar*, MemorySpace>;
  using Sub = decltype(sum_exp);
  ops::detail::for_each_row(space, "trident::tensor_parallel::ce_max", rows,
                            detail::LocalRowMax<LogitView, Stat>{logits, scratch.max, cols});
  if (group.active()) comm::allreduce(space, group.comm, scratch.max, comm::ReduceOp::max);
  ops::detail::for_each_row(space, "trident::tensor_parallel::ce_sums", rows,
                            detail::LocalSums<LogitView, TargetView, Sub>{logits, targets, scratch.max, sum_exp,
                                                                          target_logit, cols, vocab_offset});
  if (group.active()) comm::allreduce(space, group.comm, scratch.sums, comm::ReduceOp::sum);
  ops::detail::for_each_row(
      space, "trident::tensor_parallel::ce_loss_gradient", rows,
      detail::LossAndGradient<LogitView, TargetView, Sub>{logits, targets, scratch.max, sum_exp, target_logit,
                                                          Sub(losses), cols, vocab_offset, scale});
}

}  // namespace trident::tensor_parallel
