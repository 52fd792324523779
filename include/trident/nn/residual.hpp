#pragma once
// y = x + f(x), where the branch f is a chain of layers (pre-LayerNorm transformer halves,
// ResNet-style MLP blocks). The branch must map replicated data to replicated data of the
// same width; its layers may be tensor-parallel inside.

#include <trident/nn/layer.hpp>
#include <trident/ops/residual.hpp>

#include <memory>
#include <utility>
#include <vector>

namespace trident::nn {

template <class Scalar, class ExecutionSpace>
class Residual final : public Layer<Scalar, ExecutionSpace> {
 public:
  using base = Layer<Scalar, ExecutionSpace>;
  using typename base::context_type;
  using typename base::matrix;
  using typename base::state_type;

  explicit Residual(std::vector<std::unique_ptr<base>> branch) : m_branch(std::move(branch)) {}

  std::int64_t output_columns(std::int64_t in_columns) const override { return in_columns; }

  // matrices: the k outputs x_1..x_k of the branch's layers, then the gradients g_0..g_{k-1}
  // with respect to their inputs; inner: each layer's own state.
  state_type make_state(std::int64_t rows, std::int64_t in_columns) const override {
    state_type state;
    const std::size_t k = m_branch.size();
    std::vector<std::int64_t> columns = {in_columns};
    for (const auto& layer : m_branch) columns.push_back(layer->output_columns(columns.back()));
    for (std::size_t i = 0; i < k; ++i) {
      state.inner.push_back(m_branch[i]->make_state(rows, columns[i]));
      state.matrices.push_back(matrix("trident::nn::residual::output", rows, columns[i + 1]));
    }
    for (std::size_t i = 0; i < k; ++i)
      state.matrices.push_back(matrix("trident::nn::residual::gradient", rows, columns[i]));
    return state;
  }

  void forward(const context_type& c, const matrix& in, const matrix& out, state_type& state) const override {
    const std::size_t k = m_branch.size();
    for (std::size_t i = 0; i < k; ++i)
      m_branch[i]->forward(c, i == 0 ? in : state.matrices[i - 1], state.matrices[i], state.inner[i]);
    ops::residual_forward(c.space, out, in, state.matrices[k - 1]);
  }

  void backward(const context_type& c, const matrix& in, const matrix&, state_type& state, const matrix& d_out,
                const matrix& d_in) const override {
    const std::size_t k = m_branch.size();
    for (std::size_t i = k; i-- > 0;) {
      const matrix& layer_in = i == 0 ? in : state.matrices[i - 1];
      const matrix& layer_d_out = i + 1 == k ? d_out : state.matrices[k + i + 1];
      m_branch[i]->backward(c, layer_in, state.matrices[i], state.inner[i], layer_d_out, state.matrices[k + i]);
    }
    if (d_in.size() != 0) ops::residual_forward(c.space, d_in, d_out, state.matrices[k]);  // identity + branch
  }

 private:
  std::vector<std::unique_ptr<base>> m_branch;
};

}  // namespace trident::nn
