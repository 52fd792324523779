#pragma once
// GELU with the tanh approximation used by GPT-2:
//   gelu(x) = x/2 * (1 + tanh(s * (x + 0.044715 x^3))),  s = sqrt(2/pi)

#include <trident/ops/detail/fast_math.hpp>
#include <trident/ops/detail/pointwise.hpp>

#include <Kokkos_Core.hpp>

namespace trident {
namespace ops {

// Evaluated as x * sigmoid(2u), u = s (x + 0.044715 x^3), which equals the tanh form exactly
// (1 + tanh(u) = 2 sigmoid(2u)) and needs one exponential, no tanh.
struct Gelu {
  template <class Scalar>
  KOKKOS_INLINE_FUNCTION static Scalar sigmoid_2u(Scalar x) {
    const Scalar s = Scalar(0.79788456080286535588), k = Scalar(0.044715);
    return Scalar(1) / (Scalar(1) + detail::fast_exp(Scalar(-2) * s * (x + k * x * x * x)));
  }
  template <class Scalar>
  KOKKOS_INLINE_FUNCTION static Scalar value(Scalar x) {
    return x * sigmoid_2u(x);
  }
  // d/dx [x sigmoid(2u)] = sigmoid(2u) + 2 x sigmoid(2u) (1 - sigmoid(2u)) u'(x)
  template <class Scalar>
  KOKKOS_INLINE_FUNCTION static Scalar derivative(Scalar x) {
    const Scalar s = Scalar(0.79788456080286535588), k = Scalar(0.044715);
    const Scalar g = sigmoid_2u(x);
    return g + Scalar(2) * x * g * (Scalar(1) - g) * s * (Scalar(1) + Scalar(3) * k * x * x);
  }
};

// out[N, F] = gelu(inp[N, F])
template <class ExecutionSpace, class OutView, class InpView>
void gelu_forward(const ExecutionSpace& space, const OutView& out, const InpView& inp) {
  detail::pointwise_forward<Gelu>(space, "trident::ops::gelu_forward", out, inp);
}

// dinp[N, F] (=, or += with accumulate) gelu'(inp) * dout; an empty dinp is skipped.
template <class ExecutionSpace, class DInpView, class InpView, class DOutView>
void gelu_backward(const ExecutionSpace& space, const DInpView& dinp, const InpView& inp, const DOutView& dout,
                   bool accumulate = false) {
  detail::pointwise_backward<Gelu>(space, "trident::ops::gelu_backward", dinp, inp, dout, accumulate);
}

}  // namespace ops
}  // namespace trident
