#pragma once
// y = x + f(x), where the branch f is a chain of layers (pre-LayerNorm transformer halves,
// ResNet-style MLP blocks). The branch must return its input's width, split as its input is;
// its layers may be tensor-parallel inside.

#include <trident/nn/layer.hpp>
#include <trident/nn/sequence.hpp>
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

  // inner: the branch's state; scratch: the gradient with respect to the branch's input, unless
  // the branch's first layer adds the identity path's gradient itself (a pre-LayerNorm branch).
  state_type make_state(std::int64_t rows, std::int64_t in_columns, std::int64_t seq) const override {
    state_type state;
    state.inner.push_back(m_branch.make_state(rows, in_columns, seq));
    if (!m_branch.adds_to_input_gradient())
      state.scratch.push_back(matrix("trident::nn::residual::gradient", rows, in_columns));
    return state;
  }

  // The branch writes `out`, and x is added in place: no layer's backward reads its output
  // (layer.hpp), so the branch's last layer needs no copy of its own.
  void forward(const context_type& c, const matrix& in, const matrix& out, state_type& state) const override {
    m_branch.forward(c, in, out, state.inner[0]);
    ops::add_inplace(c.space, out, in);
  }

  void backward(const context_type& c, const matrix& in, const matrix& out, state_type& state, const matrix& d_out,
                const matrix& d_in) const override {
    if (m_branch.adds_to_input_gradient()) {  // identity + branch, in the branch's first pass
      if (d_in.size() != 0) {
        m_branch.backward_plus(c, in, out, state.inner[0], d_out, d_in, d_out);
      } else {
        m_branch.backward(c, in, out, state.inner[0], d_out, d_in);  // its parameter gradients alone
      }
      return;
    }
    m_branch.backward(c, in, out, state.inner[0], d_out, state.scratch[0]);
    if (d_in.size() != 0) ops::residual_forward(c.space, d_in, d_out, state.scratch[0]);  // identity + branch
  }

  void backward_weights(const context_type& c, const matrix& in, state_type& state) const override {
    m_branch.backward_weights(c, in, state.inner[0]);
  }

 private:
  Sequence<Scalar, ExecutionSpace> m_branch;
};

}  // namespace trident::nn
