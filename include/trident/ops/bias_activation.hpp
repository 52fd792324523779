#pragma once
// A linear's bias added by the activation after it, in the activation's own pass each way
// (Megatron-LM's bias-GELU fusion): the linear's product is written without its bias, and
//   bias_activation_forward<Act>(space, pre[N, F], out[N, F], bias[F]):
//     pre += bias (in place: the pre-activation backward reads), out = Act(pre);
//   bias_activation_backward<Act>(space, dpre[N, F], dbias[F], pre[N, F], dout[N, F]):
//     dpre = Act'(pre) * dout, dbias += the column sums of dpre.
// Each saves one pass over [N, F] against a bias pass beside the activation: the broadcast the
// product adds onto forward, the column sums of dpre backward. Act is any activation of
// activations.hpp or gelu.hpp. dpre may be empty (not needed); dbias is summed anyway.
// In 16 bits: forward stores pre rounded and applies Act to that rounded value, the one the
// backward will read; backward sums dbias from the float products, before dpre is rounded to
// store (more exact than summing the rounded dpre, which the unfused ops would do).

#include <trident/core/half_precision.hpp>
#include <trident/core/profiling.hpp>
#include <trident/ops/detail/checks.hpp>
#include <trident/ops/detail/launch.hpp>

#include <Kokkos_Core.hpp>

#include <cstdint>

namespace trident {
namespace ops {
namespace detail {

template <class Activation, class PreView, class OutView, class BiasView>
struct BiasActivationForward {
  PreView m_pre;
  OutView m_out;
  BiasView m_bias;
  KOKKOS_FUNCTION void operator()(const std::int64_t n, const std::int64_t f) const {
    using Pre = typename PreView::non_const_value_type;
    compute_t<Pre> pre = m_pre(n, f) + m_bias(f);
    m_pre(n, f) = pre;
    // In 16 bits the activation reads the rounded pre-activation, as the unfused ops would
    // (and as the backward does).
    if constexpr (is_half_precision_v<Pre>) pre = round_to<Pre>(pre);
    m_out(n, f) = Activation::value(pre);
  }
};

// value(n, f) of the bias gradient's column sums: the pre-activation's gradient, kept in dpre
// unless nobody needs it.
template <class Activation, class DPreView, class PreView, class DOutView, bool Store>
struct ActivationGradient {
  using Scalar = compute_t<typename DOutView::non_const_value_type>;
  DPreView m_dpre;
  PreView m_pre;
  DOutView m_dout;
  KOKKOS_FUNCTION Scalar operator()(const std::int64_t n, const std::int64_t f) const {
    const Scalar g = Activation::derivative(static_cast<Scalar>(m_pre(n, f))) * m_dout(n, f);
    if (Store) m_dpre(n, f) = g;
    return g;
  }
};

}  // namespace detail

template <class Activation, class ExecutionSpace, class PreView, class OutView, class BiasView>
void bias_activation_forward(const ExecutionSpace& space, const PreView& pre, const OutView& out,
                             const BiasView& bias) {
  detail::assert_accessible<ExecutionSpace, PreView, OutView, BiasView>();
  const char* op = "trident::ops::bias_activation_forward";
  ScopedRegion region(op);
  const std::int64_t n = detail::extent(pre, 0), f = detail::extent(pre, 1);
  detail::require_shape(out, n, f, op, "out");
  detail::require_length(bias, f, op, "bias");
  detail::for_each_element(space, op, n, f,
                           detail::BiasActivationForward<Activation, PreView, OutView, BiasView>{pre, out, bias});
}

template <class Activation, class ExecutionSpace, class DPreView, class DBiasView, class PreView, class DOutView>
void bias_activation_backward(const ExecutionSpace& space, const DPreView& dpre, const DBiasView& dbias,
                              const PreView& pre, const DOutView& dout) {
  detail::assert_accessible<ExecutionSpace, DPreView, DBiasView, PreView, DOutView>();
  const char* op = "trident::ops::bias_activation_backward";
  ScopedRegion region(op);
  const std::int64_t n = detail::extent(pre, 0), f = detail::extent(pre, 1);
  detail::require_shape(dout, n, f, op, "dout");
  detail::require_length(dbias, f, op, "dbias");
  if (detail::is_empty(dpre)) {
    detail::accumulate_column_sums(
        space, op, dbias, n, f,
        detail::ActivationGradient<Activation, DPreView, PreView, DOutView, false>{dpre, pre, dout});
    return;
  }
  detail::require_shape(dpre, n, f, op, "dpre");
  detail::accumulate_column_sums(
      space, op, dbias, n, f,
      detail::ActivationGradient<Activation, DPreView, PreView, DOutView, true>{dpre, pre, dout});
}

}  // namespace ops
}  // namespace trident
