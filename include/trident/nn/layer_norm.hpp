#pragma once
// LayerNorm over the features of each row (eps 1e-5, as torch.nn.LayerNorm), on replicated
// data; its mean and 1/std per row are kept for backward. With sequence parallelism each rank
// normalises its rows only, so its gain and bias gradients are partial: they are summed over
// the group (in scratch) before they join the gradients already accumulated.

#include <trident/nn/layer.hpp>
#include <trident/ops/layernorm.hpp>
#include <trident/ops/residual.hpp>

#include <Kokkos_Core.hpp>

#include <string>

namespace trident::nn {

template <class Scalar, class ExecutionSpace>
class LayerNorm final : public Layer<Scalar, ExecutionSpace> {
 public:
  using base = Layer<Scalar, ExecutionSpace>;
  using typename base::context_type;
  using typename base::matrix;
  using typename base::state_type;

  LayerNorm(const std::string& prefix, bool rows_split)
      : m_weight(prefix + "weight"), m_bias(prefix + "bias"), m_rows_split(rows_split) {}

  std::int64_t output_columns(std::int64_t in_columns) const override { return in_columns; }

  // vectors = {mean, 1/std}; with split rows partial_grads = {[gain; bias] gradients of this pass}.
  state_type make_state(std::int64_t rows, std::int64_t in_columns, std::int64_t) const override {
    using vector = typename LayerTypes<Scalar, ExecutionSpace>::param_vector;
    state_type state;
    state.vectors = {vector("trident::nn::layer_norm::mean", rows), vector("trident::nn::layer_norm::rstd", rows)};
    if (m_rows_split) state.partial_grads.emplace_back("trident::nn::layer_norm::partial_gradients", 2, in_columns);
    return state;
  }

  void forward(const context_type& c, const matrix& in, const matrix& out, state_type& state) const override {
    ops::layernorm_forward(c.space, out, state.vectors[0], state.vectors[1], in, c.store->vector(m_weight),
                           c.store->vector(m_bias));
  }

  void backward(const context_type& c, const matrix& in, const matrix&, state_type& state, const matrix& d_out,
                const matrix& d_in) const override {
    backward_adding(c, in, state, d_out, d_in, nullptr);
  }

  // A pre-LayerNorm residual branch (y = x + f(LN(x))): d_in = skip + this layer's input gradient.
  bool adds_to_input_gradient() const override { return true; }
  void backward_plus(const context_type& c, const matrix& in, const matrix&, state_type& state, const matrix& d_out,
                     const matrix& d_in, const matrix& skip) const override {
    backward_adding(c, in, state, d_out, d_in, &skip);
  }

 private:
  void backward_adding(const context_type& c, const matrix& in, state_type& state, const matrix& d_out,
                       const matrix& d_in, const matrix* skip) const {
    const auto& store = *c.store;
    const auto run = [&](const auto& d_weight, const auto& d_bias) {
      if (skip != nullptr) {
        ops::layernorm_backward_plus(c.space, d_in, *skip, d_weight, d_bias, d_out, in, store.vector(m_weight),
                                     state.vectors[0], state.vectors[1]);
      } else {
        ops::layernorm_backward(c.space, d_in, d_weight, d_bias, d_out, in, store.vector(m_weight), state.vectors[0],
                                state.vectors[1]);
      }
    };
    if (!m_rows_split) {
      run(store.grad_vector(m_weight), store.grad_vector(m_bias));
      return;
    }
    const auto& partial = state.partial_grads[0];
    const auto d_weight = Kokkos::subview(partial, 0, Kokkos::ALL);
    const auto d_bias = Kokkos::subview(partial, 1, Kokkos::ALL);
    sum_over_group(c, partial, [&] { run(d_weight, d_bias); });
    ops::add_inplace(c.space, store.grad_vector(m_weight), d_weight);
    ops::add_inplace(c.space, store.grad_vector(m_bias), d_bias);
  }

  std::string m_weight, m_bias;
  bool m_rows_split;
};

}  // namespace trident::nn
