#pragma once
// The layers of a model that reads token ids:
//   Embedding:         out[n] = wte[id[n]], from one input column of ids held as Scalar values.
//                      Under tensor parallelism wte is split by vocabulary rows (Megatron-LM):
//                      each rank looks up the ids in its rows, zeros for the others, and the
//                      partial rows are summed over the group (one non-zero term each: exact).
//   PositionEmbedding: out[n] = x[n] + wpe[n % T], wpe replicated.

#include <trident/core/error.hpp>
#include <trident/nn/layer.hpp>
#include <trident/nn/spec.hpp>
#include <trident/ops/embedding.hpp>
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

  Embedding(const LayerSpec& spec, const std::string& prefix)
      : m_name(describe(spec)), m_weight(prefix + "weight"), m_vocab(spec.vocab), m_features(spec.out) {}

  std::int64_t output_columns(std::int64_t) const override { return m_features; }

  state_type make_state(std::int64_t rows, std::int64_t) const override {
    state_type state;
    state.indices.emplace_back("trident::nn::embedding::tokens", rows);
    return state;
  }

  void forward(const context_type& c, const matrix& in, const matrix& out, state_type& state) const override {
    const auto& tokens = state.indices.at(0);
    read_tokens(c.space, in, tokens);
    ops::token_embedding_forward(c.space, out, tokens, c.store->matrix(m_weight), first_vocab_row(c));
    tensor_parallel::ReduceFromRegion::forward(c.space, *c.group, out);
  }

  // The ids have no gradient: d_in, if asked for, is zero.
  void backward(const context_type& c, const matrix&, const matrix&, state_type& state, const matrix& d_out,
                const matrix& d_in) const override {
    tensor_parallel::ReduceFromRegion::backward(c.space, *c.group, d_out);
    ops::token_embedding_backward(c.space, c.store->grad_matrix(m_weight), d_out, state.indices.at(0),
                                  first_vocab_row(c));
    if (d_in.size() != 0) Kokkos::deep_copy(c.space, d_in, Scalar(0));
  }

 private:
  // Where this rank's rows of wte start in the global table (0 when it holds all of them).
  int first_vocab_row(const context_type& c) const {
    return static_cast<int>(c.store->info(m_weight).blocks.at(0).global_row);
  }

  using token_view = Kokkos::View<int*, typename ExecutionSpace::memory_space>;

  // Converts the ids and checks them: the lookup treats an id outside its rows as another
  // rank's, so a bad id would silently embed as zeros. The check costs one synchronisation.
  void read_tokens(const ExecutionSpace& space, const matrix& ids, const token_view& tokens) const {
    const auto rows = static_cast<std::int64_t>(ids.extent(0));
    using Functor = detail::TokensOfIds<matrix, token_view>;
    using Policy = Kokkos::RangePolicy<ExecutionSpace, Kokkos::IndexType<std::int64_t>>;
    std::int64_t first_bad = 0;
    Kokkos::parallel_reduce("trident::nn::embedding::tokens", Policy(space, 0, rows), Functor{ids, tokens, m_vocab},
                            Kokkos::Min<std::int64_t>(first_bad));
    if (first_bad >= rows) return;
    Kokkos::View<Scalar, Kokkos::HostSpace> id("trident::nn::embedding::bad_id");
    Kokkos::deep_copy(id, Kokkos::subview(ids, first_bad, 0));
    require_argument(false, "trident::nn: ", m_name, ": row ", first_bad, " holds the id ", id(),
                     ", which is not an integer in [0, ", m_vocab, ")");
  }

  std::string m_name, m_weight;
  std::int64_t m_vocab, m_features;
};

template <class Scalar, class ExecutionSpace>
class PositionEmbedding final : public Layer<Scalar, ExecutionSpace> {
 public:
  using base = Layer<Scalar, ExecutionSpace>;
  using typename base::context_type;
  using typename base::matrix;
  using typename base::state_type;

  PositionEmbedding(const LayerSpec& spec, const std::string& prefix)
      : m_name(describe(spec)), m_weight(prefix + "weight"), m_seq(spec.seq) {}

  std::int64_t output_columns(std::int64_t in_columns) const override { return in_columns; }

  state_type make_state(std::int64_t rows, std::int64_t) const override {
    require_argument(rows % m_seq == 0, "trident::nn: ", m_name, " reads sequences of T = ", m_seq,
                     " rows, but a micro-batch has ", rows, " rows");
    return {};
  }

  void forward(const context_type& c, const matrix& in, const matrix& out, state_type&) const override {
    Kokkos::deep_copy(c.space, out, in);
    ops::position_embedding_forward(c.space, out, c.store->matrix(m_weight), static_cast<int>(m_seq), true);
  }

  void backward(const context_type& c, const matrix&, const matrix&, state_type&, const matrix& d_out,
                const matrix& d_in) const override {
    ops::position_embedding_backward(c.space, c.store->grad_matrix(m_weight), d_out, static_cast<int>(m_seq));
    if (d_in.size() != 0) Kokkos::deep_copy(c.space, d_in, d_out);
  }

 private:
  std::string m_name, m_weight;
  std::int64_t m_seq;
};

}  // namespace trident::nn
