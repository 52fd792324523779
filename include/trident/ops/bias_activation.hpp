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
    const auto pre = m_pre(n, f) + m_bias(f);
    m_pre(n, f) = pre;
    m_out(n, f) = Activation::value(pre);
  }
};

// A block of up to Width adjacent columns walks the rows in order, one accumulator per column,
// as linear.hpp's bias sums do: the sums do not depend on the thread count. On host spaces a
// block is wide, so each row is read as contiguous runs (narrow blocks stride a page a row); on
// devices a thread takes one column, so a warp reads a row's run.
template <class ExecutionSpace>
constexpr int bias_activation_block_width() {
  return runs_on_host<ExecutionSpace>() ? 256 : 1;
}

template <class Activation, class DPreView, class DBiasView, class PreView, class DOutView, int Width, bool Store>
struct BiasActivationBackward {
  using Scalar = typename DBiasView::non_const_value_type;
  DPreView m_dpre;
  DBiasView m_dbias;
  PreView m_pre;
  DOutView m_dout;
  std::int64_t m_rows, m_cols;

  KOKKOS_FUNCTION void operator()(const std::int64_t block) const {
    const std::int64_t c0 = block * Width;
    const int count = static_cast<int>(m_cols - c0 < Width ? m_cols - c0 : Width);
    Scalar acc[Width] = {};
    for (std::int64_t n = 0; n < m_rows; ++n)
      for (int j = 0; j < count; ++j) {
        const Scalar g = Activation::derivative(m_pre(n, c0 + j)) * m_dout(n, c0 + j);
        if (Store) m_dpre(n, c0 + j) = g;
        acc[j] += g;
      }
    for (int j = 0; j < count; ++j) m_dbias(c0 + j) += acc[j];
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
  if (n == 0 || f == 0) return;
  constexpr int width = detail::bias_activation_block_width<ExecutionSpace>();
  const detail::IndexRange<ExecutionSpace> blocks(space, 0, (f + width - 1) / width);
  if (detail::is_empty(dpre)) {
    Kokkos::parallel_for(
        op, blocks,
        detail::BiasActivationBackward<Activation, DPreView, DBiasView, PreView, DOutView, width, false>{
            dpre, dbias, pre, dout, n, f});
    return;
  }
  detail::require_shape(dpre, n, f, op, "dpre");
  Kokkos::parallel_for(op, blocks,
                       detail::BiasActivationBackward<Activation, DPreView, DBiasView, PreView, DOutView, width, true>{
                           dpre, dbias, pre, dout, n, f});
}

}  // namespace ops
}  // namespace trident
