#pragma once
// The layers of a model that reads token ids:
//   Embedding:         out[n] = table[id[n]], from one input column of ids held as Scalar values.
//                      Under tensor parallelism the table is split by vocabulary rows (Megatron-LM):
//                      each rank looks up the ids in its rows, zeros for the others, and the
//                      partial rows are summed over the group (one non-zero term each: exact);
//                      with sequence parallelism the sums are scattered over the ranks' rows.
//   PositionEmbedding: out[n] = x[n] + wpe[n % T], wpe replicated; T is the micro-batch's
//                      sequence length, at most the table's rows. On rows split by sequence
//                      parallelism a rank's rows start at rank * rows, and the gradients of the
//                      ranks' rows are summed over the group.

#include <trident/core/error.hpp>
#include <trident/nn/layer.hpp>
#include <trident/nn/spec.hpp>
#include <trident/ops/embedding.hpp>
#include <trident/ops/residual.hpp>
#include <trident/tensor_parallel/mappings.hpp>

#include <Kokkos_Core.hpp>

#include <cstdint>
#include <string>

namespace trident::nn {
namespace detail {

// tokens[n] = ids(n, 0) as an int; the minimum reduction finds the first row whose id is not
// an integer in [0, vocab) (the reduction's identity, past the last row, when all are), whose
// token is then -1.
template <class IdView, class TokenView>
struct TokensOfIds {
  using Scalar = typename IdView::non_const_value_type;
  IdView m_ids;
  TokenView m_tokens;
  std::int64_t m_vocab;

  KOKKOS_FUNCTION void operator()(const std::int64_t n, std::int64_t& first_bad) const {
    const Scalar id = m_ids(n, 0);
    // The range test comes first, so the conversion below never overflows (and NaN fails it).
    const bool valid = id >= Scalar(0) && id < static_cast<Scalar>(m_vocab) &&
                       static_cast<Scalar>(static_cast<std::int64_t>(id)) == id;
    m_tokens(n) = valid ? static_cast<int>(id) : -1;
    if (!valid && n < first_bad) first_bad = n;
  }
};

}  // namespace detail

template <class Scalar, class ExecutionSpace>
class Embedding final : public Layer<Scalar, ExecutionSpace> {
 public:
  using base = Layer<Scalar, ExecutionSpace>;
  using typename base::context_type;
  using typename base::matrix;
  using typename base::state_type;

  // `sequence_parallel`: the output is split by rows over the group.
  Embedding(const LayerSpec& spec, const std::string& prefix, int tp_size, bool sequence_parallel)
      : m_name(describe(spec)),
        m_weight(prefix + "weight"),
        m_vocab(spec.vocab),
        m_features(spec.out),
        m_tp_size(tp_size),
        m_scatter(sequence_parallel) {}

  std::int64_t output_columns(std::int64_t) const override { return m_features; }
  std::int64_t output_rows(std::int64_t in_rows) const override { return m_scatter ? in_rows / m_tp_size : in_rows; }

  // indices = {the tokens}; scattering, scratch = {the partial rows, the gathered gradient}.
  state_type make_state(std::int64_t rows, std::int64_t, std::int64_t) const override {
    require_argument(!m_scatter || rows % m_tp_size == 0, "trident::nn: ", m_name, " splits its ", rows, " rows over ",
                     m_tp_size, " ranks (sequence parallelism), which does not divide them");
    state_type state;
    state.indices.emplace_back("trident::nn::embedding::tokens", rows);
    if (m_scatter) {
      state.scratch.push_back(matrix("trident::nn::embedding::partial", rows, m_features));
      state.scratch.push_back(matrix("trident::nn::embedding::gradient", rows, m_features));
    }
    return state;
  }

  void forward(const context_type& c, const matrix& in, const matrix& out, state_type& state) const override {
    require_argument(!is_half_precision_v<Scalar>, "trident::nn: ", m_name, " in a model of 16-bit activations must ",
                     "be the model's first layer (or the first of its first chain), which reads the token ids as ",
                     "float: 16 bits would round them");
    look_up(c, in, out, state);
  }

  bool reads_ids() const override { return true; }
  void forward_ids(const context_type& c, const typename base::input_matrix& ids, const matrix& out,
                   state_type& state) const override {
    look_up(c, ids, out, state);
  }

  // The ids have no gradient: d_in, if asked for, is zero.
  void backward(const context_type& c, const matrix&, const matrix&, state_type& state, const matrix& d_out,
                const matrix& d_in) const override {
    const matrix d_rows = m_scatter ? state.scratch[1] : d_out;
    tensor_parallel::LeaveRegion::backward(c.space, *c.group, d_out, d_rows);
    ops::token_embedding_backward(c.space, c.store->grad_matrix(m_weight), d_rows, state.indices.at(0),
                                  first_vocab_row(c));
    if (d_in.size() != 0) Kokkos::deep_copy(c.space, d_in, Scalar(0));
  }

 private:
  // Where this rank's rows of the table start in the global table (0 when it holds all of them).
  int first_vocab_row(const context_type& c) const {
    return static_cast<int>(c.store->info(m_weight).blocks.at(0).global_row);
  }

  using token_view = Kokkos::View<int*, typename ExecutionSpace::memory_space>;

  template <class IdView>
  void look_up(const context_type& c, const IdView& ids, const matrix& out, state_type& state) const {
    const auto& tokens = state.indices.at(0);
    read_tokens(c.space, ids, tokens);
    const matrix partial = m_scatter ? state.scratch[0] : out;
    ops::token_embedding_forward(c.space, partial, tokens, c.store->matrix(m_weight), first_vocab_row(c));
    tensor_parallel::LeaveRegion::forward(c.space, *c.group, partial, out);
  }

  // Converts the ids and checks them: the lookup treats an id outside its rows as another
  // rank's, so a bad id would silently embed as zeros. The check costs one synchronisation.
  template <class IdView>
  void read_tokens(const ExecutionSpace& space, const IdView& ids, const token_view& tokens) const {
    const auto rows = static_cast<std::int64_t>(ids.extent(0));
    using Functor = detail::TokensOfIds<IdView, token_view>;
    using Policy = Kokkos::RangePolicy<ExecutionSpace, Kokkos::IndexType<std::int64_t>>;
    std::int64_t first_bad = 0;
    Kokkos::parallel_reduce("trident::nn::embedding::tokens", Policy(space, 0, rows), Functor{ids, tokens, m_vocab},
                            Kokkos::Min<std::int64_t>(first_bad));
    if (first_bad >= rows) return;
    Kokkos::View<typename IdView::non_const_value_type, Kokkos::HostSpace> id("trident::nn::embedding::bad_id");
    Kokkos::deep_copy(id, Kokkos::subview(ids, first_bad, 0));
    require_argument(false, "trident::nn: ", m_name, ": row ", first_bad, " holds the id ", id(),
                     ", which is not an integer in [0, ", m_vocab, ")");
  }

  std::string m_name, m_weight;
  std::int64_t m_vocab, m_features;
  int m_tp_size;
  bool m_scatter;
};

template <class Scalar, class ExecutionSpace>
class PositionEmbedding final : public Layer<Scalar, ExecutionSpace> {
 public:
  using base = Layer<Scalar, ExecutionSpace>;
  using typename base::context_type;
  using typename base::matrix;
  using typename base::state_type;

  // `rows_split`: the input is this rank's share of the rows of `tp_size` ranks.
  PositionEmbedding(const LayerSpec& spec, const std::string& prefix, bool rows_split, int tp_size)
      : m_name(describe(spec)),
        m_weight(prefix + "weight"),
        m_positions(spec.seq),
        m_rows_split(rows_split),
        m_tp_size(tp_size) {}

  std::int64_t output_columns(std::int64_t in_columns) const override { return in_columns; }

  // With split rows, partial_grads = {this pass's gradient of wpe's first T rows}.
  state_type make_state(std::int64_t rows, std::int64_t in_columns, std::int64_t seq) const override {
    const std::int64_t t = sequence_length(seq);
    const std::int64_t all_rows = m_rows_split ? rows * m_tp_size : rows;
    require_argument(all_rows % t == 0, "trident::nn: ", m_name, " reads sequences of T = ", t,
                     " rows, but a micro-batch has ", all_rows, " rows");
    state_type state;
    if (m_rows_split)
      state.partial_grads.emplace_back("trident::nn::position_embedding::partial_gradient", t, in_columns);
    return state;
  }

  void forward(const context_type& c, const matrix& in, const matrix& out, state_type&) const override {
    Kokkos::deep_copy(c.space, out, in);
    ops::position_embedding_rows_forward(c.space, out, c.store->matrix(m_weight),
                                         static_cast<int>(sequence_length(c.seq)), first_row(c, in));
  }

  void backward(const context_type& c, const matrix&, const matrix&, state_type& state, const matrix& d_out,
                const matrix& d_in) const override {
    const int t = static_cast<int>(sequence_length(c.seq));
    const auto grad = c.store->grad_matrix(m_weight);
    if (!m_rows_split) {
      ops::position_embedding_backward(c.space, grad, d_out, t);
    } else {
      const auto& partial = state.partial_grads[0];
      sum_over_group(c, partial,
                     [&] { ops::position_embedding_rows_backward(c.space, partial, d_out, t, first_row(c, d_out)); });
      ops::add_inplace(c.space, Kokkos::subview(grad, Kokkos::make_pair(0, t), Kokkos::ALL), partial);
    }
    if (d_in.size() != 0) Kokkos::deep_copy(c.space, d_in, d_out);
  }

 private:
  std::int64_t sequence_length(std::int64_t seq) const {
    const std::int64_t t = seq > 0 ? seq : m_positions;
    require_argument(t <= m_positions, "trident::nn: ", m_name, " has positions for sequences of up to ", m_positions,
                     " rows, not ", t);
    return t;
  }

  // The global row of this rank's first row: its share of split rows starts at rank * rows.
  std::int64_t first_row(const context_type& c, const matrix& rows) const {
    return m_rows_split ? static_cast<std::int64_t>(c.group->rank()) * static_cast<std::int64_t>(rows.extent(0)) : 0;
  }

  std::string m_name, m_weight;
  std::int64_t m_positions;
  bool m_rows_split;
  int m_tp_size;
};

}  // namespace trident::nn
