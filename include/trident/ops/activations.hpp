#pragma once
// Pointwise activations for users' own models, with the same shape of signature as GELU:
//   <name>_forward(space, out[N, F], inp[N, F])
//   <name>_backward(space, dinp[N, F], inp[N, F], dout[N, F], accumulate = false)

#include <trident/core/compat.hpp>
#include <trident/ops/detail/fast_math.hpp>
#include <trident/ops/detail/pointwise.hpp>
#include <trident/ops/gelu.hpp>

#include <Kokkos_Core.hpp>

namespace trident {
namespace ops {

struct Relu {
  template <class Scalar>
  KOKKOS_INLINE_FUNCTION static Scalar value(Scalar x) {
    return x > Scalar(0) ? x : Scalar(0);
  }
  // The derivative at 0 is taken as 0, as PyTorch does.
  template <class Scalar>
  KOKKOS_INLINE_FUNCTION static Scalar derivative(Scalar x) {
    return x > Scalar(0) ? Scalar(1) : Scalar(0);
  }
};

struct Tanh {
  template <class Scalar>
  KOKKOS_INLINE_FUNCTION static Scalar value(Scalar x) {
    return math::tanh(x);
  }
  template <class Scalar>
  KOKKOS_INLINE_FUNCTION static Scalar derivative(Scalar x) {
    const Scalar t = math::tanh(x);
    return Scalar(1) - t * t;
  }
};

// silu(x) = x * sigmoid(x)
struct Silu {
  template <class Scalar>
  KOKKOS_INLINE_FUNCTION static Scalar sigmoid(Scalar x) {
    return Scalar(1) / (Scalar(1) + detail::fast_exp(-x));
  }
  template <class Scalar>
  KOKKOS_INLINE_FUNCTION static Scalar value(Scalar x) {
    return x * sigmoid(x);
  }
  template <class Scalar>
  KOKKOS_INLINE_FUNCTION static Scalar derivative(Scalar x) {
    const Scalar s = sigmoid(x);
    return s * (Scalar(1) + x * (Scalar(1) - s));
  }
};

template <class ExecutionSpace, class OutView, class InpView>
void relu_forward(const ExecutionSpace& space, const OutView& out, const InpView& inp) {
  detail::pointwise_forward<Relu>(space, "trident::ops::relu_forward", out, inp);
}
template <class ExecutionSpace, class DInpView, class InpView, class DOutView>
void relu_backward(const ExecutionSpace& space, const DInpView& dinp, const InpView& inp, const DOutView& dout,
                   bool accumulate = false) {
  detail::pointwise_backward<Relu>(space, "trident::ops::relu_backward", dinp, inp, dout, accumulate);
}

template <class ExecutionSpace, class OutView, class InpView>
void tanh_forward(const ExecutionSpace& space, const OutView& out, const InpView& inp) {
  detail::pointwise_forward<Tanh>(space, "trident::ops::tanh_forward", out, inp);
}
template <class ExecutionSpace, class DInpView, class InpView, class DOutView>
void tanh_backward(const ExecutionSpace& space, const DInpView& dinp, const InpView& inp, const DOutView& dout,
                   bool accumulate = false) {
  detail::pointwise_backward<Tanh>(space, "trident::ops::tanh_backward", dinp, inp, dout, accumulate);
}

template <class ExecutionSpace, class OutView, class InpView>
void silu_forward(const ExecutionSpace& space, const OutView& out, const InpView& inp) {
  detail::pointwise_forward<Silu>(space, "trident::ops::silu_forward", out, inp);
}
template <class ExecutionSpace, class DInpView, class InpView, class DOutView>
void silu_backward(const ExecutionSpace& space, const DInpView& dinp, const InpView& inp, const DOutView& dout,
                   bool accumulate = false) {
  detail::pointwise_backward<Silu>(space, "trident::ops::silu_backward", dinp, inp, dout, accumulate);
}

}  // namespace ops
}  // namespace trident
