#pragma once
// The activation functions as layers: GELU (tanh approximation), ReLU, tanh and SiLU, applied
// elementwise, so they work on replicated and on column-split data alike. An activation right
// after a linear in a chain adds that linear's bias itself (`bias`, nn::activation_takes_bias):
// forward completes its input with the bias in the pass that applies the function, backward
// sums the bias gradient in the pass of the derivative (ops/bias_activation.hpp).

#include <trident/nn/layer.hpp>
#include <trident/nn/spec.hpp>
#include <trident/ops/activations.hpp>
#include <trident/ops/bias_activation.hpp>
#include <trident/ops/gelu.hpp>

#include <string>
#include <utility>

namespace trident::nn {

template <class Scalar, class ExecutionSpace>
class Pointwise final : public Layer<Scalar, ExecutionSpace> {
 public:
  using base = Layer<Scalar, ExecutionSpace>;
  using typename base::context_type;
  using typename base::matrix;
  using typename base::state_type;

  explicit Pointwise(LayerKind kind, std::string bias = {}) : m_kind(kind), m_bias(std::move(bias)) {
    require_argument(is_pointwise(kind), "trident::nn::Pointwise: not an activation function");
  }

  std::int64_t output_columns(std::int64_t in_columns) const override { return in_columns; }

  void forward(const context_type& c, const matrix& in, const matrix& out, state_type&) const override {
    if (!m_bias.empty()) {
      with_activation([&](auto activation) {
        ops::bias_activation_forward<decltype(activation)>(c.space, in, out, c.store->vector(m_bias));
      });
      return;
    }
    switch (m_kind) {
      case LayerKind::gelu:
        return ops::gelu_forward(c.space, out, in);
      case LayerKind::relu:
        return ops::relu_forward(c.space, out, in);
      case LayerKind::tanh:
        return ops::tanh_forward(c.space, out, in);
      default:
        return ops::silu_forward(c.space, out, in);
    }
  }

  void backward(const context_type& c, const matrix& in, const matrix&, state_type&, const matrix& d_out,
                const matrix& d_in) const override {
    if (!m_bias.empty()) {
      with_activation([&](auto activation) {
        ops::bias_activation_backward<decltype(activation)>(c.space, d_in, c.store->grad_vector(m_bias), in, d_out);
      });
      return;
    }
    switch (m_kind) {
      case LayerKind::gelu:
        return ops::gelu_backward(c.space, d_in, in, d_out);
      case LayerKind::relu:
        return ops::relu_backward(c.space, d_in, in, d_out);
      case LayerKind::tanh:
        return ops::tanh_backward(c.space, d_in, in, d_out);
      default:
        return ops::silu_backward(c.space, d_in, in, d_out);
    }
  }

 private:
  template <class F>
  void with_activation(F&& f) const {
    switch (m_kind) {
      case LayerKind::gelu:
        return f(ops::Gelu{});
      case LayerKind::relu:
        return f(ops::Relu{});
      case LayerKind::tanh:
        return f(ops::Tanh{});
      default:
        return f(ops::Silu{});
    }
  }

  LayerKind m_kind;
  std::string m_bias;  // the linear's before it, which this layer adds; empty: none
};

}  // namespace trident::nn
