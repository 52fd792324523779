#pragma once
// The activation functions as layers: GELU (tanh approximation), ReLU, tanh and SiLU, applied
// elementwise, so they work on replicated and on column-split data alike.

#include <trident/nn/layer.hpp>
#include <trident/nn/spec.hpp>
#include <trident/ops/activations.hpp>
#include <trident/ops/gelu.hpp>

namespace trident::nn {

template <class Scalar, class ExecutionSpace>
class Pointwise final : public Layer<Scalar, ExecutionSpace> {
 public:
  using base = Layer<Scalar, ExecutionSpace>;
  using typename base::context_type;
  using typename base::matrix;
  using typename base::state_type;

  explicit Pointwise(LayerKind kind) : m_kind(kind) {
    require_argument(is_pointwise(kind), "trident::nn::Pointwise: not an activation function");
  }

  std::int64_t output_columns(std::int64_t in_columns) const override { return in_columns; }

  void forward(const context_type& c, const matrix& in, const matrix& out, state_type&) const override {
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
  LayerKind m_kind;
};

}  // namespace trident::nn
