#pragma once
// Layers run one after another as one layer: a transformer block, a residual branch. The
// outputs between the layers are the micro-batch's own; the gradients between them are
// scratch.

#include <trident/nn/layer.hpp>

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

namespace trident::nn {

template <class Scalar, class ExecutionSpace>
class Sequence final : public Layer<Scalar, ExecutionSpace> {
 public:
  using base = Layer<Scalar, ExecutionSpace>;
  using typename base::context_type;
  using typename base::matrix;
  using typename base::state_type;

  explicit Sequence(std::vector<std::unique_ptr<base>> layers) : m_layers(std::move(layers)) {}

  std::int64_t output_columns(std::int64_t in_columns) const override {
    for (const auto& layer : m_layers) in_columns = layer->output_columns(in_columns);
    return in_columns;
  }
  std::int64_t output_rows(std::int64_t in_rows) const override {
    for (const auto& layer : m_layers) in_rows = layer->output_rows(in_rows);
    return in_rows;
  }

  // matrices: the outputs x_1..x_{k-1} between the k layers; scratch: their gradients; inner:
  // each layer's state.
  state_type make_state(std::int64_t rows, std::int64_t in_columns, std::int64_t seq) const override {
    state_type state;
    for (std::size_t i = 0; i < m_layers.size(); ++i) {
      state.inner.push_back(m_layers[i]->make_state(rows, in_columns, seq));
      rows = m_layers[i]->output_rows(rows);
      in_columns = m_layers[i]->output_columns(in_columns);
      if (i + 1 == m_layers.size()) break;
      state.matrices.push_back(matrix("trident::nn::sequence::output", rows, in_columns));
      state.scratch.push_back(matrix("trident::nn::sequence::gradient", rows, in_columns));
    }
    return state;
  }

  void forward(const context_type& c, const matrix& in, const matrix& out, state_type& state) const override {
    for (std::size_t i = 0; i < m_layers.size(); ++i)
      m_layers[i]->forward(c, input(i, in, state), output(i, out, state), state.inner[i]);
  }

  // A chain that starts with an embedding (GPT-2's wte and wpe) reads ids as its first layer does.
  bool reads_ids() const override { return m_layers.front()->reads_ids(); }
  void forward_ids(const context_type& c, const typename base::input_matrix& ids, const matrix& out,
                   state_type& state) const override {
    m_layers.front()->forward_ids(c, ids, output(0, out, state), state.inner[0]);
    for (std::size_t i = 1; i < m_layers.size(); ++i)
      m_layers[i]->forward(c, state.matrices[i - 1], output(i, out, state), state.inner[i]);
  }

  void backward(const context_type& c, const matrix& in, const matrix& out, state_type& state, const matrix& d_out,
                const matrix& d_in) const override {
    backward_chain(c, in, out, state, d_out, d_in, nullptr);
  }

  // A chain adds to its input gradient as its first layer does.
  bool adds_to_input_gradient() const override {
    return !m_layers.empty() && m_layers.front()->adds_to_input_gradient();
  }
  void backward_plus(const context_type& c, const matrix& in, const matrix& out, state_type& state, const matrix& d_out,
                     const matrix& d_in, const matrix& skip) const override {
    backward_chain(c, in, out, state, d_out, d_in, &skip);
  }

  void backward_weights(const context_type& c, const matrix& in, state_type& state) const override {
    for (std::size_t i = m_layers.size(); i-- > 0;)
      m_layers[i]->backward_weights(c, input(i, in, state), state.inner[i]);
  }

 private:
  // The layers' backwards, last to first; the first adds `skip` to d_in when given.
  void backward_chain(const context_type& c, const matrix& in, const matrix& out, state_type& state,
                      const matrix& d_out, const matrix& d_in, const matrix* skip) const {
    const std::size_t k = m_layers.size();
    for (std::size_t i = k; i-- > 0;) {
      context_type layer_context = c;
      layer_context.output_gradient_kept = c.output_gradient_kept && i + 1 == k;  // the others' is scratch
      const matrix& layer_d_out = i + 1 == k ? d_out : state.scratch[i];
      if (i == 0 && skip != nullptr) {
        m_layers[0]->backward_plus(layer_context, in, output(0, out, state), state.inner[0], layer_d_out, d_in, *skip);
      } else {
        m_layers[i]->backward(layer_context, input(i, in, state), output(i, out, state), state.inner[i], layer_d_out,
                              i == 0 ? d_in : state.scratch[i - 1]);
      }
    }
  }

  static const matrix& input(std::size_t i, const matrix& in, const state_type& state) {
    return i == 0 ? in : state.matrices[i - 1];
  }
  const matrix& output(std::size_t i, const matrix& out, const state_type& state) const {
    return i + 1 == m_layers.size() ? out : state.matrices[i];
  }

  std::vector<std::unique_ptr<base>> m_layers;
};

}  // namespace trident::nn
