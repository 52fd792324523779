#pragma once
// Forward and backward of a pointwise activation f on [N, F] views, shared by GELU, ReLU,
// tanh and SiLU. The activation is a struct with two static KOKKOS_INLINE_FUNCTIONs,
// value(x) and derivative(x), so forward and backward cannot drift apart. 16-bit views are
// computed in float (compute_t) and rounded when stored.

#include <trident/core/half_precision.hpp>
#include <trident/core/profiling.hpp>
#include <trident/ops/detail/checks.hpp>
#include <trident/ops/detail/launch.hpp>

#include <Kokkos_Core.hpp>

#include <cstdint>
#include <string>

namespace trident {
namespace ops {
namespace detail {

template <class Activation, class OutView, class InpView>
struct PointwiseForward {
  OutView m_out;
  InpView m_inp;
  KOKKOS_FUNCTION void operator()(const std::int64_t n, const std::int64_t f) const {
    m_out(n, f) = Activation::value(static_cast<compute_t<typename InpView::non_const_value_type>>(m_inp(n, f)));
  }
};

template <class Activation, class DInpView, class InpView, class DOutView, bool Accumulate>
struct PointwiseBackward {
  DInpView m_dinp;
  InpView m_inp;
  DOutView m_dout;
  KOKKOS_FUNCTION void operator()(const std::int64_t n, const std::int64_t f) const {
    using Scalar = compute_t<typename InpView::non_const_value_type>;
    const Scalar grad = Activation::derivative(static_cast<Scalar>(m_inp(n, f))) * m_dout(n, f);
    if (Accumulate) {
      m_dinp(n, f) = m_dinp(n, f) + grad;
    } else {
      m_dinp(n, f) = grad;
    }
  }
};

template <class Activation, class ExecutionSpace, class OutView, class InpView>
void pointwise_forward(const ExecutionSpace& space, const char* op, const OutView& out, const InpView& inp) {
  assert_accessible<ExecutionSpace, OutView, InpView>();
  static_assert(static_cast<int>(OutView::rank) == 2 && static_cast<int>(InpView::rank) == 2,
                "trident::ops: activations take rank-2 views [N, F]");
  ScopedRegion region(op);
  const std::int64_t n = extent(inp, 0), f = extent(inp, 1);
  require_shape(out, n, f, op, "out");
  for_each_element(space, op, n, f, PointwiseForward<Activation, OutView, InpView>{out, inp});
}

template <class Activation, class ExecutionSpace, class DInpView, class InpView, class DOutView>
void pointwise_backward(const ExecutionSpace& space, const char* op, const DInpView& dinp, const InpView& inp,
                        const DOutView& dout, bool accumulate) {
  assert_accessible<ExecutionSpace, DInpView, InpView, DOutView>();
  static_assert(static_cast<int>(DInpView::rank) == 2 && static_cast<int>(InpView::rank) == 2 &&
                    static_cast<int>(DOutView::rank) == 2,
                "trident::ops: activations take rank-2 views [N, F]");
  ScopedRegion region(op);
  if (is_empty(dinp)) return;
  const std::int64_t n = extent(inp, 0), f = extent(inp, 1);
  require_shape(dout, n, f, op, "dout");
  require_shape(dinp, n, f, op, "dinp");
  if (accumulate) {
    for_each_element(space, op, n, f,
                     PointwiseBackward<Activation, DInpView, InpView, DOutView, true>{dinp, inp, dout});
  } else {
    for_each_element(space, op, n, f,
                     PointwiseBackward<Activation, DInpView, InpView, DOutView, false>{dinp, inp, dout});
  }
}

}  // namespace detail
}  // namespace ops
}  // namespace trident
