#pragma once
// Layer normalisation over the last dimension:
//   out = (x - mean) * rstd * weight + bias,  rstd = 1 / sqrt(var + eps)  (biased variance)
// The forward keeps mean and rstd per row for the backward. With 16-bit data the arithmetic is
// in float; mean and rstd are best kept in float views (Megatron keeps them so): the backward
// reads them as they are.

#include <trident/core/compat.hpp>
#include <trident/core/half_precision.hpp>
#include <trident/core/profiling.hpp>
#include <trident/ops/detail/checks.hpp>
#include <trident/ops/detail/launch.hpp>

#include <Kokkos_Core.hpp>

#include <cstdint>

namespace trident {
namespace ops {
namespace detail {

template <class OutView, class MeanView, class RstdView, class InpView, class WeightView, class BiasView>
struct LayerNormForwardRow {
  using Scalar = compute_t<typename OutView::non_const_value_type>;
  OutView m_out;
  MeanView m_mean;
  RstdView m_rstd;
  InpView m_inp;
  WeightView m_weight;
  BiasView m_bias;
  std::int64_t m_cols;
  Scalar m_eps;

  template <class Row>
  KOKKOS_FUNCTION void operator()(const std::int64_t n, const Row& row) const {
    const Scalar inv_cols = Scalar(1) / static_cast<Scalar>(m_cols);
    // Two passes (mean, then squared deviations) keep the variance accurate when |mean| >> std.
    const Scalar mean = row.sum(m_cols, [&](std::int64_t c) { return static_cast<Scalar>(m_inp(n, c)); }) * inv_cols;
    const Scalar var = row.sum(m_cols, [&](std::int64_t c) {
      const Scalar d = m_inp(n, c) - mean;
      return d * d;
    }) * inv_cols;
    const Scalar rstd = Scalar(1) / math::sqrt(var + m_eps);
    row.for_each(m_cols, [&](std::int64_t c) { m_out(n, c) = (m_inp(n, c) - mean) * rstd * m_weight(c) + m_bias(c); });
    row.single([&]() {
      m_mean(n) = mean;
      m_rstd(n) = rstd;
    });
  }
};

// dinp = rstd * (g - mean(g) - xhat * mean(g * xhat)),  g = dout * weight, xhat = (x - mean) * rstd,
// added to `m_add` when m_adds (dinp itself to accumulate, or a residual's identity gradient).
template <class DInpView, class DOutView, class InpView, class WeightView, class MeanView, class RstdView,
          class AddView = DInpView>
struct LayerNormBackwardRow {
  using Scalar = compute_t<typename DOutView::non_const_value_type>;
  DInpView m_dinp;
  DOutView m_dout;
  InpView m_inp;
  WeightView m_weight;
  MeanView m_mean;
  RstdView m_rstd;
  std::int64_t m_cols;
  bool m_adds;
  AddView m_add;

  template <class Row>
  KOKKOS_FUNCTION void operator()(const std::int64_t n, const Row& row) const {
    const Scalar mean = m_mean(n), rstd = m_rstd(n), inv_cols = Scalar(1) / static_cast<Scalar>(m_cols);
    const Scalar mean_g =
        row.sum(m_cols, [&](std::int64_t c) { return static_cast<Scalar>(m_dout(n, c) * m_weight(c)); }) * inv_cols;
    const Scalar mean_g_xhat = row.sum(m_cols, [&](std::int64_t c) {
      return static_cast<Scalar>(m_dout(n, c) * m_weight(c) * (m_inp(n, c) - mean) * rstd);
    }) * inv_cols;
    if (m_adds) {
      row.for_each(m_cols, [&](std::int64_t c) {
        const Scalar xhat = (m_inp(n, c) - mean) * rstd;
        m_dinp(n, c) = m_add(n, c) + rstd * (m_dout(n, c) * m_weight(c) - mean_g - xhat * mean_g_xhat);
      });
    } else {
      row.for_each(m_cols, [&](std::int64_t c) {
        const Scalar xhat = (m_inp(n, c) - mean) * rstd;
        m_dinp(n, c) = rstd * (m_dout(n, c) * m_weight(c) - mean_g - xhat * mean_g_xhat);
      });
    }
  }
};

// value(n, c) of the weight gradient's column sums on devices: dout[n, c] * xhat[n, c], in the
// host strips' order of operations.
template <class DOutView, class InpView, class MeanView, class RstdView>
struct NormalizedGradient {
  using Scalar = compute_t<typename DOutView::non_const_value_type>;
  DOutView m_dout;
  InpView m_inp;
  MeanView m_mean;
  RstdView m_rstd;

  KOKKOS_FUNCTION Scalar operator()(const std::int64_t n, const std::int64_t c) const {
    const Scalar g = m_dout(n, c);
    return g * (static_cast<Scalar>(m_inp(n, c)) - static_cast<Scalar>(m_mean(n))) * static_cast<Scalar>(m_rstd(n));
  }
};

// dweight[c] += sum_n dout[n, c] * xhat[n, c];  dbias[c] += sum_n dout[n, c]
// Host spaces: blocks of Width columns, rows in order: deterministic, no atomics.
template <class DWeightView, class DBiasView, class DOutView, class InpView, class MeanView, class RstdView, int Width>
struct LayerNormParameterGradients {
  using Scalar = compute_t<typename DOutView::non_const_value_type>;
  DWeightView m_dweight;
  DBiasView m_dbias;
  DOutView m_dout;
  InpView m_inp;
  MeanView m_mean;
  RstdView m_rstd;
  std::int64_t m_rows, m_cols;
  bool m_want_weight, m_want_bias;

  KOKKOS_FUNCTION void operator()(const std::int64_t block) const {
    const std::int64_t c0 = block * Width;
    const int width = c0 + Width <= m_cols ? Width : static_cast<int>(m_cols - c0);
    Scalar acc_weight[Width] = {}, acc_bias[Width] = {};
    if (width == Width) {
      for (std::int64_t n = 0; n < m_rows; ++n) {
        const Scalar mean = m_mean(n), rstd = m_rstd(n);
        for (int j = 0; j < Width; ++j) {
          const Scalar g = m_dout(n, c0 + j);
          acc_weight[j] += g * (m_inp(n, c0 + j) - mean) * rstd;
          acc_bias[j] += g;
        }
      }
    } else {
      for (std::int64_t n = 0; n < m_rows; ++n) {
        const Scalar mean = m_mean(n), rstd = m_rstd(n);
        for (int j = 0; j < width; ++j) {
          const Scalar g = m_dout(n, c0 + j);
          acc_weight[j] += g * (m_inp(n, c0 + j) - mean) * rstd;
          acc_bias[j] += g;
        }
      }
    }
    for (int j = 0; j < width; ++j) {
      if (m_want_weight) m_dweight(c0 + j) = m_dweight(c0 + j) + acc_weight[j];
      if (m_want_bias) m_dbias(c0 + j) = m_dbias(c0 + j) + acc_bias[j];
    }
  }
};

}  // namespace detail

// out[N, C] = layernorm(inp[N, C]) * weight[C] + bias[C]; writes mean[N] and rstd[N].
template <class ExecutionSpace, class OutView, class MeanView, class RstdView, class InpView, class WeightView,
          class BiasView>
void layernorm_forward(const ExecutionSpace& space, const OutView& out, const MeanView& mean, const RstdView& rstd,
                       const InpView& inp, const WeightView& weight, const BiasView& bias,
                       compute_t<typename OutView::non_const_value_type> eps = 1e-5) {
  detail::assert_accessible<ExecutionSpace, OutView, MeanView, RstdView, InpView, WeightView, BiasView>();
  ScopedRegion region("trident::ops::layernorm_forward");
  const char* op = "trident::ops::layernorm_forward";
  const std::int64_t n = detail::extent(inp, 0), c = detail::extent(inp, 1);
  detail::require_shape(out, n, c, op, "out");
  detail::require_length(mean, n, op, "mean");
  detail::require_length(rstd, n, op, "rstd");
  detail::require_length(weight, c, op, "weight");
  detail::require_length(bias, c, op, "bias");
  require_argument(c > 0, op, ": inp has no columns");
  using Row = detail::LayerNormForwardRow<OutView, MeanView, RstdView, InpView, WeightView, BiasView>;
  detail::for_each_row(space, "trident::ops::layernorm_forward", n, Row{out, mean, rstd, inp, weight, bias, c, eps});
}

namespace detail {

// The parameter gradients on devices, where a thread a column would leave most of the device
// idle (C columns, each thousands of rows long): column sums in chunks of rows, callable on any
// space (the tests run it on the host).
template <class ExecutionSpace, class DWeightView, class DBiasView, class DOutView, class InpView, class MeanView,
          class RstdView>
void layernorm_parameter_gradients_in_chunks(const ExecutionSpace& space, const DWeightView& dweight,
                                             const DBiasView& dbias, const DOutView& dout, const InpView& inp,
                                             const MeanView& mean, const RstdView& rstd, bool want_weight,
                                             bool want_bias) {
  const std::int64_t n = extent(dout, 0), c = extent(dout, 1);
  if (want_weight)
    accumulate_column_sums_in_chunks(space, "trident::ops::layernorm_dweight", dweight, n, c,
                                     NormalizedGradient<DOutView, InpView, MeanView, RstdView>{dout, inp, mean, rstd});
  if (want_bias)
    accumulate_column_sums_in_chunks(space, "trident::ops::layernorm_dbias", dbias, n, c, ElementOf<DOutView>{dout});
}

// dinp = (add +) the input gradient; the parameter gradients added to dweight and dbias.
template <class ExecutionSpace, class DInpView, class AddView, class DWeightView, class DBiasView, class DOutView,
          class InpView, class WeightView, class MeanView, class RstdView>
void layernorm_backward_adding(const ExecutionSpace& space, const DInpView& dinp, bool adds, const AddView& add,
                               const DWeightView& dweight, const DBiasView& dbias, const DOutView& dout,
                               const InpView& inp, const WeightView& weight, const MeanView& mean,
                               const RstdView& rstd) {
  detail::assert_accessible<ExecutionSpace, DInpView, AddView, DWeightView, DBiasView, DOutView, InpView, WeightView,
                            MeanView, RstdView>();
  ScopedRegion region("trident::ops::layernorm_backward");
  const char* op = "trident::ops::layernorm_backward";
  const std::int64_t n = detail::extent(inp, 0), c = detail::extent(inp, 1);
  detail::require_shape(dout, n, c, op, "dout");
  detail::require_length(weight, c, op, "weight");
  detail::require_length(mean, n, op, "mean");
  detail::require_length(rstd, n, op, "rstd");
  const bool want_weight = !detail::is_empty(dweight), want_bias = !detail::is_empty(dbias);
  if (want_weight) detail::require_length(dweight, c, op, "dweight");
  if (want_bias) detail::require_length(dbias, c, op, "dbias");
  const bool want_input = !detail::is_empty(dinp);
  if (want_input) detail::require_shape(dinp, n, c, op, "dinp");
  if (want_input && adds) detail::require_shape(add, n, c, op, "skip");
  // The parameter gradients first: dinp may be dout itself (a residual branch of one LayerNorm
  // writing its input gradient over the stream's), and each row reads dout before writing dinp.
  if ((want_weight || want_bias) && c > 0) {
    if constexpr (detail::runs_on_host<ExecutionSpace>()) {
      constexpr int width = detail::host_column_strip_width;
      using Columns =
          detail::LayerNormParameterGradients<DWeightView, DBiasView, DOutView, InpView, MeanView, RstdView, width>;
      Kokkos::parallel_for("trident::ops::layernorm_parameter_gradients",
                           detail::IndexRange<ExecutionSpace>(space, 0, detail::column_block_count(c, width)),
                           Columns{dweight, dbias, dout, inp, mean, rstd, n, c, want_weight, want_bias});
    } else {
      detail::layernorm_parameter_gradients_in_chunks(space, dweight, dbias, dout, inp, mean, rstd, want_weight,
                                                      want_bias);
    }
  }
  if (want_input) {
    using Row = detail::LayerNormBackwardRow<DInpView, DOutView, InpView, WeightView, MeanView, RstdView, AddView>;
    detail::for_each_row(space, "trident::ops::layernorm_backward", n,
                         Row{dinp, dout, inp, weight, mean, rstd, c, adds, add});
  }
}

}  // namespace detail

// dinp[N, C] (=, or += with accumulate); dweight[C] += ...; dbias[C] += ... Any gradient view
// may be empty (skipped).
template <class ExecutionSpace, class DInpView, class DWeightView, class DBiasView, class DOutView, class InpView,
          class WeightView, class MeanView, class RstdView>
void layernorm_backward(const ExecutionSpace& space, const DInpView& dinp, const DWeightView& dweight,
                        const DBiasView& dbias, const DOutView& dout, const InpView& inp, const WeightView& weight,
                        const MeanView& mean, const RstdView& rstd, bool accumulate = false) {
  detail::layernorm_backward_adding(space, dinp, accumulate, dinp, dweight, dbias, dout, inp, weight, mean, rstd);
}

// As layernorm_backward, with dinp = skip + the input gradient: the gradient of a residual
// stream whose branch starts with this LayerNorm (y = x + f(LN(x))), its identity path added
// in the same pass over the rows instead of a pass of its own. skip and dout may be dinp itself.
template <class ExecutionSpace, class DInpView, class SkipView, class DWeightView, class DBiasView, class DOutView,
          class InpView, class WeightView, class MeanView, class RstdView>
void layernorm_backward_plus(const ExecutionSpace& space, const DInpView& dinp, const SkipView& skip,
                             const DWeightView& dweight, const DBiasView& dbias, const DOutView& dout,
                             const InpView& inp, const WeightView& weight, const MeanView& mean, const RstdView& rstd) {
  require_argument(!detail::is_empty(dinp), "trident::ops::layernorm_backward_plus: dinp is empty");
  detail::layernorm_backward_adding(space, dinp, true, skip, dweight, dbias, dout, inp, weight, mean, rstd);
}

}  // namespace ops
}  // namespace trident
