#pragma once
// Fully connected layers in the Hugging Face Conv1D layout (weight [in, out], y = x W + b),
// and the tied output head (weight [V, C] used transposed, y = x W^T, no bias).
//
// Backward conventions (every *_backward in trident::ops): parameter gradients are
// accumulated (+=, so micro-batches add up); the input gradient is written, or added when
// `accumulate` is true (residual streams); an empty view means "not needed" and is skipped.
//
// In mixed precision the parameters compute in the activations' 16-bit type: a float weight
// multiplied by 16-bit activations (forward, and the input gradient) is rounded to their type
// for the product, as Megatron-LM's 16-bit copy of the model and autocast round it. Both
// operands are then 16-bit, which a device's vendor GEMM runs on its tensor cores, and every
// backend multiplies the same values.

#include <trident/core/half_precision.hpp>
#include <trident/core/profiling.hpp>
#include <trident/ops/detail/checks.hpp>
#include <trident/ops/detail/launch.hpp>
#include <trident/ops/detail/vendor_gemm.hpp>
#include <trident/ops/matmul.hpp>

#include <Kokkos_Core.hpp>

#include <cstdint>
#include <string>
#include <type_traits>

namespace trident {
namespace ops {
namespace detail {

// out[n, o] = bias[o]: the bias is laid down first so the GEMM adds onto it (beta = 1).
template <class OutView, class BiasView>
struct BroadcastBias {
  OutView m_out;
  BiasView m_bias;
  KOKKOS_FUNCTION void operator()(const std::int64_t n, const std::int64_t o) const { m_out(n, o) = m_bias(o); }
};

// to = from rounded to Activation, stored in to's type.
template <class Activation, class ToView, class FromView>
struct RoundElements {
  ToView m_to;
  FromView m_from;
  KOKKOS_FUNCTION void operator()(const std::int64_t i, const std::int64_t j) const {
    m_to(i, j) = static_cast<typename ToView::non_const_value_type>(Activation(m_from(i, j)));
  }
};

// The weight as a product with `Activation`s reads it: a float weight beside 16-bit activations
// rounded to their type, into a 16-bit copy where the space has the vendor's 16-bit GEMM and a
// float copy of the rounded values elsewhere (which the BLAS then takes without widening it);
// otherwise the weight itself.
template <class Activation, class ExecutionSpace, class WeightView>
auto product_weight(const ExecutionSpace& space, const WeightView& weight) {
  using Weight = typename WeightView::non_const_value_type;
  if constexpr (is_half_precision_v<Activation> && !is_half_precision_v<Weight>) {
    using Copy = std::conditional_t<has_vendor_gemm<ExecutionSpace>(), Activation, float>;
    using CopyView = Kokkos::View<Copy**, Kokkos::LayoutRight, typename WeightView::memory_space>;
    const CopyView copy(Kokkos::view_alloc(Kokkos::WithoutInitializing, std::string("trident::ops::linear_weight")),
                        weight.extent(0), weight.extent(1));
    for_each_element(space, "trident::ops::linear_round_weight", extent(weight, 0), extent(weight, 1),
                     RoundElements<Activation, CopyView, WeightView>{copy, weight});
    return copy;
  } else {
    return weight;
  }
}

}  // namespace detail

// out[N, O] = inp[N, I] · weight[I, O] + bias[O]  (bias may be empty: no bias)
template <class ExecutionSpace, class OutView, class InpView, class WeightView, class BiasView>
void linear_forward(const ExecutionSpace& space, const OutView& out, const InpView& inp, const WeightView& weight,
                    const BiasView& bias) {
  detail::assert_accessible<ExecutionSpace, OutView, InpView, WeightView, BiasView>();
  ScopedRegion region("trident::ops::linear_forward");
  const char* op = "trident::ops::linear_forward";
  const std::int64_t n = detail::extent(inp, 0), in = detail::extent(inp, 1), o = detail::extent(weight, 1);
  require_argument(detail::extent(weight, 0) == in, op, ": inp has ", in, " columns but weight has ", weight.extent(0),
                   " rows");
  detail::require_shape(out, n, o, op, "out");
  const bool has_bias = !detail::is_empty(bias);
  if (has_bias) detail::require_length(bias, o, op, "bias");
  const auto weight_used = detail::product_weight<typename InpView::non_const_value_type>(space, weight);
  if constexpr (is_half_precision_v<typename OutView::non_const_value_type>) {
    if (has_bias) {
      // The bias joins the product in float, so out is rounded once (not the bias first, then
      // the sum): the GEMM's float result, which matmul would allocate anyway, is ours.
      using Sum = Kokkos::View<float**, Kokkos::LayoutRight, typename OutView::memory_space>;
      const Sum sum(Kokkos::view_alloc(Kokkos::WithoutInitializing, std::string("trident::ops::linear_sum")), n, o);
      detail::for_each_element(space, "trident::ops::linear_bias", n, o,
                               detail::BroadcastBias<Sum, BiasView>{sum, bias});
      matmul(space, 'N', 'N', 1.0f, inp, weight_used, 1.0f, sum);
      detail::for_each_element(space, "trident::ops::linear_round", n, o, detail::CopyElements<OutView, Sum>{out, sum});
      return;
    }
  }
  if (has_bias)
    detail::for_each_element(space, "trident::ops::linear_bias", n, o,
                             detail::BroadcastBias<OutView, BiasView>{out, bias});
  using Scalar = compute_t<typename OutView::non_const_value_type>;
  matmul(space, 'N', 'N', Scalar(1), inp, weight_used, has_bias ? Scalar(1) : Scalar(0), out);
}

// dinp[N, I] (=, or += with accumulate) dout · weight^T;  dweight[I, O] += inp^T · dout;
// dbias[O] += column sums of dout. dinp, dweight, dbias may each be empty (skipped).
template <class ExecutionSpace, class DInpView, class DWeightView, class DBiasView, class DOutView, class InpView,
          class WeightView>
void linear_backward(const ExecutionSpace& space, const DInpView& dinp, const DWeightView& dweight,
                     const DBiasView& dbias, const DOutView& dout, const InpView& inp, const WeightView& weight,
                     bool accumulate = false) {
  detail::assert_accessible<ExecutionSpace, DInpView, DWeightView, DBiasView, DOutView, InpView, WeightView>();
  ScopedRegion region("trident::ops::linear_backward");
  const char* op = "trident::ops::linear_backward";
  using Scalar = compute_t<typename DOutView::non_const_value_type>;
  const std::int64_t n = detail::extent(inp, 0), in = detail::extent(inp, 1), o = detail::extent(weight, 1);
  require_argument(detail::extent(weight, 0) == in, op, ": inp has ", in, " columns but weight has ", weight.extent(0),
                   " rows");
  detail::require_shape(dout, n, o, op, "dout");
  if (!detail::is_empty(dinp)) {
    detail::require_shape(dinp, n, in, op, "dinp");
    matmul(space, 'N', 'T', Scalar(1), dout,
           detail::product_weight<typename DOutView::non_const_value_type>(space, weight),
           accumulate ? Scalar(1) : Scalar(0), dinp);
  }
  if (!detail::is_empty(dweight)) {
    detail::require_shape(dweight, in, o, op, "dweight");
    matmul(space, 'T', 'N', Scalar(1), inp, dout, Scalar(1), dweight);
  }
  if (!detail::is_empty(dbias)) {
    detail::require_length(dbias, o, op, "dbias");
    detail::accumulate_column_sums(space, "trident::ops::linear_dbias", dbias, n, o, detail::ElementOf<DOutView>{dout});
  }
}

// out[N, V] = inp[N, C] · weight[V, C]^T  (the output head tied to the token embedding)
template <class ExecutionSpace, class OutView, class InpView, class WeightView>
void linear_transposed_forward(const ExecutionSpace& space, const OutView& out, const InpView& inp,
                               const WeightView& weight) {
  detail::assert_accessible<ExecutionSpace, OutView, InpView, WeightView>();
  ScopedRegion region("trident::ops::linear_transposed_forward");
  const char* op = "trident::ops::linear_transposed_forward";
  const std::int64_t n = detail::extent(inp, 0), c = detail::extent(inp, 1), v = detail::extent(weight, 0);
  require_argument(detail::extent(weight, 1) == c, op, ": inp has ", c, " columns but weight has ", weight.extent(1),
                   " columns");
  detail::require_shape(out, n, v, op, "out");
  using Scalar = compute_t<typename OutView::non_const_value_type>;
  matmul(space, 'N', 'T', Scalar(1), inp, detail::product_weight<typename InpView::non_const_value_type>(space, weight),
         Scalar(0), out);
}

// dinp[N, C] (=, or += with accumulate) dout · weight;  dweight[V, C] += dout^T · inp.
template <class ExecutionSpace, class DInpView, class DWeightView, class DOutView, class InpView, class WeightView>
void linear_transposed_backward(const ExecutionSpace& space, const DInpView& dinp, const DWeightView& dweight,
                                const DOutView& dout, const InpView& inp, const WeightView& weight,
                                bool accumulate = false) {
  detail::assert_accessible<ExecutionSpace, DInpView, DWeightView, DOutView, InpView, WeightView>();
  ScopedRegion region("trident::ops::linear_transposed_backward");
  const char* op = "trident::ops::linear_transposed_backward";
  using Scalar = compute_t<typename DOutView::non_const_value_type>;
  const std::int64_t n = detail::extent(inp, 0), c = detail::extent(inp, 1), v = detail::extent(weight, 0);
  require_argument(detail::extent(weight, 1) == c, op, ": inp has ", c, " columns but weight has ", weight.extent(1),
                   " columns");
  detail::require_shape(dout, n, v, op, "dout");
  if (!detail::is_empty(dinp)) {
    detail::require_shape(dinp, n, c, op, "dinp");
    matmul(space, 'N', 'N', Scalar(1), dout,
           detail::product_weight<typename DOutView::non_const_value_type>(space, weight),
           accumulate ? Scalar(1) : Scalar(0), dinp);
  }
  if (!detail::is_empty(dweight)) {
    detail::require_shape(dweight, v, c, op, "dweight");
    matmul(space, 'T', 'N', Scalar(1), dout, inp, Scalar(1), dweight);
  }
}

}  // namespace ops
}  // namespace trident
