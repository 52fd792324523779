#pragma once
// Softmax + cross-entropy over the vocabulary, fused and numerically stable (the row maximum
// is subtracted before exponentiating):
//   losses[n]     = logsumexp(logits[n, :]) - logits[n, targets[n]]
//   dlogits[n, v] = scale * (softmax(logits[n, :])[v] - [v == targets[n]])
// A target outside [0, V) (such as -1 for padding) is ignored: its loss and gradient are 0.

#include <trident/core/compat.hpp>
#include <trident/core/half_precision.hpp>
#include <trident/core/profiling.hpp>
#include <trident/ops/detail/checks.hpp>
#include <trident/ops/detail/fast_math.hpp>
#include <trident/ops/detail/launch.hpp>

#include <Kokkos_Core.hpp>

#include <cstdint>
#include <type_traits>

namespace trident {
namespace ops {
namespace detail {

template <class LossView, class LogitView, class TargetView>
struct CrossEntropyForwardRow {
  using Scalar = compute_t<typename LogitView::non_const_value_type>;
  LossView m_losses;
  LogitView m_logits;
  TargetView m_targets;
  std::int64_t m_vocab;

  template <class Row>
  KOKKOS_FUNCTION void operator()(const std::int64_t n, const Row& row) const {
    const std::int64_t target = static_cast<std::int64_t>(m_targets(n));
    if (target < 0 || target >= m_vocab) {
      row.single([&]() { m_losses(n) = Scalar(0); });
      return;
    }
    const auto* logits = &m_logits(n, 0);
    const Scalar max = row.max(m_vocab, [&](std::int64_t v) { return static_cast<Scalar>(logits[v]); });
    const Scalar sum = row.sum(m_vocab, [&](std::int64_t v) { return fast_exp(static_cast<Scalar>(logits[v] - max)); });
    row.single([&]() { m_losses(n) = math::log(sum) + max - logits[target]; });
  }
};

// Reads the whole row (its maximum, the target's logit) before writing any of it, and then
// writes each element after reading it, so dlogits may be the very memory of logits. With
// WithLoss it also writes the row's loss, from the same maximum and sum.
template <class DLogitView, class LogitView, class TargetView, class LossView, bool WithLoss>
struct CrossEntropyBackwardRow {
  using Scalar = compute_t<typename DLogitView::non_const_value_type>;
  DLogitView m_dlogits;
  LogitView m_logits;
  TargetView m_targets;
  std::int64_t m_vocab;
  Scalar m_scale;
  LossView m_losses;

  template <class Row>
  KOKKOS_FUNCTION void operator()(const std::int64_t n, const Row& row) const {
    const std::int64_t target = static_cast<std::int64_t>(m_targets(n));
    auto* dlogits = &m_dlogits(n, 0);
    if (target < 0 || target >= m_vocab) {
      row.for_each(m_vocab, [&](std::int64_t v) { dlogits[v] = Scalar(0); });
      if (WithLoss) row.single([&]() { m_losses(n) = Scalar(0); });
      return;
    }
    const auto* logits = &m_logits(n, 0);
    const Scalar target_logit = logits[target];
    const Scalar max = row.max(m_vocab, [&](std::int64_t v) { return static_cast<Scalar>(logits[v]); });
    if constexpr (is_half_precision_v<typename DLogitView::non_const_value_type>) {
      // 16-bit dlogits cannot keep the exponentials unrounded: sum them first, then write each
      // one scaled (and the target's shifted), so every element is rounded once.
      const Scalar sum =
          row.sum(m_vocab, [&](std::int64_t v) { return fast_exp(static_cast<Scalar>(logits[v] - max)); });
      const Scalar factor = m_scale / sum;
      row.for_each(m_vocab, [&](std::int64_t v) {
        const Scalar p = fast_exp(static_cast<Scalar>(logits[v] - max)) * factor;
        dlogits[v] = v == target ? p - m_scale : p;
      });
      if (WithLoss) row.single([&]() { m_losses(n) = math::log(sum) + max - target_logit; });
    } else {
      // One exponential per element: store exp(x - max), sum what was stored, then scale it.
      row.for_each(m_vocab, [&](std::int64_t v) { dlogits[v] = fast_exp(static_cast<Scalar>(logits[v] - max)); });
      const Scalar sum = row.sum(m_vocab, [&](std::int64_t v) { return dlogits[v]; });
      const Scalar factor = m_scale / sum;
      row.for_each(m_vocab, [&](std::int64_t v) { dlogits[v] *= factor; });
      row.single([&]() {
        dlogits[target] -= m_scale;
        if (WithLoss) m_losses(n) = math::log(sum) + max - target_logit;
      });
    }
  }
};

}  // namespace detail

// losses[N] = logsumexp(logits[N, V]) - logits[n, targets[n]]
template <class ExecutionSpace, class LossView, class LogitView, class TargetView>
void cross_entropy_forward(const ExecutionSpace& space, const LossView& losses, const LogitView& logits,
                           const TargetView& targets) {
  detail::assert_accessible<ExecutionSpace, LossView, LogitView, TargetView>();
  static_assert(std::is_integral<typename TargetView::non_const_value_type>::value,
                "trident::ops::cross_entropy_forward: targets must hold integers");
  ScopedRegion region("trident::ops::cross_entropy_forward");
  const char* op = "trident::ops::cross_entropy_forward";
  const std::int64_t n = detail::extent(logits, 0), v = detail::extent(logits, 1);
  detail::require_length(losses, n, op, "losses");
  detail::require_length(targets, n, op, "targets");
  require_argument(v > 0, op, ": logits have no columns");
  detail::require_row_major(logits, op, "logits");
  using Row = detail::CrossEntropyForwardRow<LossView, LogitView, TargetView>;
  detail::for_each_row(space, "trident::ops::cross_entropy_forward", n, Row{losses, logits, targets, v});
}

// dlogits[N, V] = scale * (softmax(logits) - onehot(targets)); dlogits may alias logits.
// scale is d(total loss)/d(losses[n]), e.g. 1 / (number of tokens in the global batch).
template <class ExecutionSpace, class DLogitView, class LogitView, class TargetView>
void cross_entropy_backward(const ExecutionSpace& space, const DLogitView& dlogits, const LogitView& logits,
                            const TargetView& targets, compute_t<typename DLogitView::non_const_value_type> scale) {
  detail::assert_accessible<ExecutionSpace, DLogitView, LogitView, TargetView>();
  static_assert(std::is_integral<typename TargetView::non_const_value_type>::value,
                "trident::ops::cross_entropy_backward: targets must hold integers");
  ScopedRegion region("trident::ops::cross_entropy_backward");
  const char* op = "trident::ops::cross_entropy_backward";
  const std::int64_t n = detail::extent(logits, 0), v = detail::extent(logits, 1);
  detail::require_shape(dlogits, n, v, op, "dlogits");
  detail::require_length(targets, n, op, "targets");
  require_argument(v > 0, op, ": logits have no columns");
  detail::require_row_major(logits, op, "logits");
  detail::require_row_major(dlogits, op, "dlogits");
  using NoLosses = Kokkos::View<typename DLogitView::non_const_value_type*, typename DLogitView::memory_space>;
  using Row = detail::CrossEntropyBackwardRow<DLogitView, LogitView, TargetView, NoLosses, false>;
  detail::for_each_row(space, "trident::ops::cross_entropy_backward", n,
                       Row{dlogits, logits, targets, v, scale, NoLosses()});
}

// Both at once, as a training step needs them: losses[N] as cross_entropy_forward and dlogits
// as cross_entropy_backward (dlogits may alias logits), with one pass of exponentials instead
// of two.
template <class ExecutionSpace, class LossView, class DLogitView, class LogitView, class TargetView>
void cross_entropy_forward_backward(const ExecutionSpace& space, const LossView& losses, const DLogitView& dlogits,
                                    const LogitView& logits, const TargetView& targets,
                                    compute_t<typename DLogitView::non_const_value_type> scale) {
  detail::assert_accessible<ExecutionSpace, LossView, DLogitView, LogitView, TargetView>();
  static_assert(std::is_integral<typename TargetView::non_const_value_type>::value,
                "trident::ops::cross_entropy_forward_backward: targets must hold integers");
  ScopedRegion region("trident::ops::cross_entropy_forward_backward");
  const char* op = "trident::ops::cross_entropy_forward_backward";
  const std::int64_t n = detail::extent(logits, 0), v = detail::extent(logits, 1);
  detail::require_length(losses, n, op, "losses");
  detail::require_shape(dlogits, n, v, op, "dlogits");
  detail::require_length(targets, n, op, "targets");
  require_argument(v > 0, op, ": logits have no columns");
  detail::require_row_major(logits, op, "logits");
  detail::require_row_major(dlogits, op, "dlogits");
  using Row = detail::CrossEntropyBackwardRow<DLogitView, LogitView, TargetView, LossView, true>;
  detail::for_each_row(space, "trident::ops::cross_entropy_forward_backward", n,
                       Row{dlogits, logits, targets, v, scale, losses});
}

}  // namespace ops
}  // namespace trident
