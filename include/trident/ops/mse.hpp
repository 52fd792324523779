#pragma once
// Mean-squared error per row, for users' regression models:
//   losses[n]   = 1/F * sum_f (pred[n, f] - target[n, f])^2
//   dpred[n, f] = scale * 2/F * (pred[n, f] - target[n, f])
// scale is d(total loss)/d(losses[n]), e.g. 1/N for the mean over rows.

#include <trident/core/half_precision.hpp>
#include <trident/core/profiling.hpp>
#include <trident/ops/detail/checks.hpp>
#include <trident/ops/detail/launch.hpp>

#include <Kokkos_Core.hpp>

#include <cstdint>

namespace trident {
namespace ops {
namespace detail {

template <class LossView, class PredView, class TargetView>
struct MseForwardRow {
  using Scalar = compute_t<typename PredView::non_const_value_type>;
  LossView m_losses;
  PredView m_pred;
  TargetView m_target;
  std::int64_t m_cols;

  template <class Row>
  KOKKOS_FUNCTION void operator()(const std::int64_t n, const Row& row) const {
    const Scalar total = row.sum(m_cols, [&](std::int64_t f) {
      const Scalar d = m_pred(n, f) - m_target(n, f);
      return d * d;
    });
    row.single([&]() { m_losses(n) = total / static_cast<Scalar>(m_cols); });
  }
};

template <class DPredView, class PredView, class TargetView, bool Accumulate>
struct MseBackward {
  using Scalar = compute_t<typename DPredView::non_const_value_type>;
  DPredView m_dpred;
  PredView m_pred;
  TargetView m_target;
  Scalar m_factor;  // scale * 2 / F
  KOKKOS_FUNCTION void operator()(const std::int64_t n, const std::int64_t f) const {
    const Scalar grad = m_factor * (m_pred(n, f) - m_target(n, f));
    if (Accumulate) {
      m_dpred(n, f) = m_dpred(n, f) + grad;
    } else {
      m_dpred(n, f) = grad;
    }
  }
};

}  // namespace detail

template <class ExecutionSpace, class LossView, class PredView, class TargetView>
void mse_forward(const ExecutionSpace& space, const LossView& losses, const PredView& pred, const TargetView& target) {
  detail::assert_accessible<ExecutionSpace, LossView, PredView, TargetView>();
  ScopedRegion region("trident::ops::mse_forward");
  const char* op = "trident::ops::mse_forward";
  const std::int64_t n = detail::extent(pred, 0), f = detail::extent(pred, 1);
  detail::require_length(losses, n, op, "losses");
  detail::require_shape(target, n, f, op, "target");
  require_argument(f > 0, op, ": pred has no columns");
  detail::for_each_row(space, op, n, detail::MseForwardRow<LossView, PredView, TargetView>{losses, pred, target, f});
}

// dpred (=, or += with accumulate) scale * 2/F * (pred - target); dpred may alias pred.
template <class ExecutionSpace, class DPredView, class PredView, class TargetView>
void mse_backward(const ExecutionSpace& space, const DPredView& dpred, const PredView& pred, const TargetView& target,
                  compute_t<typename DPredView::non_const_value_type> scale, bool accumulate = false) {
  detail::assert_accessible<ExecutionSpace, DPredView, PredView, TargetView>();
  ScopedRegion region("trident::ops::mse_backward");
  const char* op = "trident::ops::mse_backward";
  if (detail::is_empty(dpred)) return;
  using Scalar = compute_t<typename DPredView::non_const_value_type>;
  const std::int64_t n = detail::extent(pred, 0), f = detail::extent(pred, 1);
  detail::require_shape(target, n, f, op, "target");
  detail::require_shape(dpred, n, f, op, "dpred");
  const Scalar factor = f > 0 ? scale * Scalar(2) / static_cast<Scalar>(f) : Scalar(0);
  if (accumulate) {
    detail::for_each_element(space, op, n, f,
                             detail::MseBackward<DPredView, PredView, TargetView, true>{dpred, pred, target, factor});
  } else {
    detail::for_each_element(space, op, n, f,
                             detail::MseBackward<DPredView, PredView, TargetView, false>{dpred, pred, target, factor});
  }
}

}  // namespace ops
}  // namespace trident
