#pragma once
// LayerNorm over the features of each row (eps 1e-5, as torch.nn.LayerNorm), on replicated
// data; its mean and 1/std per row are kept for backward.

#include <trident/nn/layer.hpp>
#include <trident/ops/layernorm.hpp>

#include <string>

namespace trident::nn {

template <class Scalar, class ExecutionSpace>
class LayerNorm final : public Layer<Scalar, ExecutionSpace> {
 public:
  using base = Layer<Scalar, ExecutionSpace>;
  using typename base::context_type;
  using typename base::matrix;
  using typename base::state_type;

  explicit LayerNorm(const std::string& prefix) : m_weight(prefix + "weight"), m_bias(prefix + "bias") {}

  std::int64_t output_columns(std::int64_t in_columns) const override { return in_columns; }

  state_type make_state(std::int64_t rows, std::int64_t) const override {
    using vector = typename LayerTypes<Scalar, ExecutionSpace>::vector;
    state_type state;
    state.vectors = {vector("trident::nn::layer_norm::mean", rows), vector("trident::nn::layer_norm::rstd", rows)};
    return state;
  }

  void forward(const context_type& c, const matrix& in, const matrix& out, state_type& state) const override {
    ops::layernorm_forward(c.space, out, state.vectors[0], state.vectors[1], in, c.store->vector(m_weight),
                           c.store->vector(m_bias));
  }

  void backward(const context_type& c, const matrix& in, const matrix&, state_type& state, const matrix& d_out,
                const matrix& d_in) const override {
    ops::layernorm_backward(c.space, d_in, c.store->grad_vector(m_weight), c.store->grad_vector(m_bias), d_out, in,
                            c.store->vector(m_weight), state.vectors[0], state.vectors[1]);
  }

 private:
  std::string m_weight, m_bias;
};

}  // namespace trident::nn
