#pragma once
// Token and position embeddings:
//   out[n, :] = table[tokens[n] - vocab_offset, :] + positions[n % T, :]
// The token table may be a shard of the vocabulary, rows [vocab_offset, vocab_offset + Vl):
// a token outside the shard contributes zeros (the vocabulary-parallel ranks' partial sums
// then add up to the full embedding). The position table may have more rows than T (one per
// position of the context window); rows [0, T) are used.
//
// The backward is deterministic: each column is accumulated by one thread walking the tokens
// in order, so repeated tokens add up in the same order on every run and every backend.

#include <trident/core/half_precision.hpp>
#include <trident/core/profiling.hpp>
#include <trident/ops/detail/checks.hpp>
#include <trident/ops/detail/launch.hpp>

#include <Kokkos_Core.hpp>

#include <cstdint>
#include <type_traits>

namespace trident {
namespace ops {
namespace detail {

template <class OutView, class TokenView, class TableView, class PositionsView, bool WithTokens, bool WithPositions,
          bool Accumulate>
struct EmbeddingForward {
  using Scalar = compute_t<typename OutView::non_const_value_type>;
  OutView m_out;
  TokenView m_tokens;
  TableView m_table;
  PositionsView m_positions;
  std::int64_t m_seq_len, m_vocab_offset, m_vocab_local;
  std::int64_t m_first_row = 0;  // the global row of out's row 0 (its position is first_row % T)

  KOKKOS_FUNCTION void operator()(const std::int64_t n, const std::int64_t c) const {
    Scalar value = 0;
    if (WithTokens) {
      const std::int64_t row = static_cast<std::int64_t>(m_tokens(n)) - m_vocab_offset;
      if (row >= 0 && row < m_vocab_local) value = m_table(row, c);
    }
    if (WithPositions) value += m_positions((m_first_row + n) % m_seq_len, c);
    if (Accumulate) {
      m_out(n, c) = m_out(n, c) + value;
    } else {
      m_out(n, c) = value;
    }
  }
};

// d_table[tokens[n] - vocab_offset, c] += dout[n, c] for the tokens in the shard; one work item
// per block of m_width columns (detail::column_block_width), tokens in order.
template <class DTableView, class DOutView, class TokenView>
struct TokenEmbeddingBackward {
  DTableView m_d_table;
  DOutView m_dout;
  TokenView m_tokens;
  std::int64_t m_rows, m_cols, m_vocab_offset, m_vocab_local;
  int m_width;

  KOKKOS_FUNCTION void operator()(const std::int64_t block) const {
    const std::int64_t c0 = block * m_width;
    const int width = c0 + m_width <= m_cols ? m_width : static_cast<int>(m_cols - c0);
    for (std::int64_t n = 0; n < m_rows; ++n) {
      const std::int64_t row = static_cast<std::int64_t>(m_tokens(n)) - m_vocab_offset;
      if (row < 0 || row >= m_vocab_local) continue;
      for (int j = 0; j < width; ++j) m_d_table(row, c0 + j) = m_d_table(row, c0 + j) + m_dout(n, c0 + j);
    }
  }
};

// d_positions[t, c] += sum of dout[n, c] over the rows n at position t, in order: the rows are global
// rows [first_row, first_row + rows) of whole sequences of length T.
template <class DPositionsView, class DOutView>
struct PositionEmbeddingBackward {
  using Scalar = compute_t<typename DPositionsView::non_const_value_type>;
  DPositionsView m_d_positions;
  DOutView m_dout;
  std::int64_t m_seq_len, m_rows, m_first_row = 0;
  KOKKOS_FUNCTION void operator()(const std::int64_t t, const std::int64_t c) const {
    Scalar total = 0;
    const std::int64_t first = ((t - m_first_row % m_seq_len) + m_seq_len) % m_seq_len;
    for (std::int64_t n = first; n < m_rows; n += m_seq_len) total += m_dout(n, c);
    m_d_positions(t, c) = m_d_positions(t, c) + total;
  }
};

template <class TokenView>
constexpr void assert_token_type() {
  static_assert(std::is_integral<typename TokenView::non_const_value_type>::value,
                "trident::ops: tokens must hold integers");
}

template <class OutView>
void require_positions(const OutView& out, std::int64_t seq_len, std::int64_t table_rows, const char* op,
                       const char* table) {
  require_argument(seq_len > 0 && extent(out, 0) % seq_len == 0, op, ": ", extent(out, 0),
                   " rows are not a whole number of sequences of length T = ", seq_len);
  require_argument(table_rows >= seq_len, op, ": ", table, " has ", table_rows, " rows but T = ", seq_len);
}

template <class ExecutionSpace, bool WithTokens, bool WithPositions, bool Accumulate, class OutView, class TokenView,
          class TableView, class PositionsView>
void launch_embedding_forward(const ExecutionSpace& space, const char* label, const OutView& out,
                              const TokenView& tokens, const TableView& table, const PositionsView& positions,
                              std::int64_t seq_len, std::int64_t vocab_offset, std::int64_t first_row = 0) {
  using Functor = EmbeddingForward<OutView, TokenView, TableView, PositionsView, WithTokens, WithPositions, Accumulate>;
  for_each_element(
      space, label, extent(out, 0), extent(out, 1),
      Functor{out, tokens, table, positions, seq_len, vocab_offset, WithTokens ? extent(table, 0) : 0, first_row});
}

}  // namespace detail

// out[N, C] = table[tokens[n] - vocab_offset] (zero outside the shard) + positions[n % T]
template <class ExecutionSpace, class OutView, class TokenView, class TableView, class PositionsView>
void embedding_forward(const ExecutionSpace& space, const OutView& out, const TokenView& tokens, const TableView& table,
                       const PositionsView& positions, int T, int vocab_offset = 0) {
  detail::assert_accessible<ExecutionSpace, OutView, TokenView, TableView, PositionsView>();
  detail::assert_token_type<TokenView>();
  ScopedRegion region("trident::ops::embedding_forward");
  const char* op = "trident::ops::embedding_forward";
  const std::int64_t n = detail::extent(out, 0), c = detail::extent(out, 1);
  detail::require_length(tokens, n, op, "tokens");
  detail::require_positions(out, T, detail::extent(positions, 0), op, "positions");
  require_argument(detail::extent(table, 1) == c && detail::extent(positions, 1) == c, op, ": out has ", c,
                   " columns, table ", table.extent(1), " and positions ", positions.extent(1));
  detail::launch_embedding_forward<ExecutionSpace, true, true, false>(space, op, out, tokens, table, positions, T,
                                                                      vocab_offset);
}

// out[N, C] = table[tokens[n] - vocab_offset] (zero outside the shard): no positions, so that
// vocabulary-parallel ranks can sum their shards first and add the positions once.
template <class ExecutionSpace, class OutView, class TokenView, class TableView>
void token_embedding_forward(const ExecutionSpace& space, const OutView& out, const TokenView& tokens,
                             const TableView& table, int vocab_offset = 0) {
  detail::assert_accessible<ExecutionSpace, OutView, TokenView, TableView>();
  detail::assert_token_type<TokenView>();
  ScopedRegion region("trident::ops::token_embedding_forward");
  const char* op = "trident::ops::token_embedding_forward";
  const std::int64_t n = detail::extent(out, 0), c = detail::extent(out, 1);
  detail::require_length(tokens, n, op, "tokens");
  require_argument(detail::extent(table, 1) == c, op, ": out has ", c, " columns but table has ", table.extent(1));
  detail::launch_embedding_forward<ExecutionSpace, true, false, false>(space, op, out, tokens, table, table, 1,
                                                                       vocab_offset);
}

// out[N, C] (=, or += with accumulate) positions[n % T]
template <class ExecutionSpace, class OutView, class PositionsView>
void position_embedding_forward(const ExecutionSpace& space, const OutView& out, const PositionsView& positions, int T,
                                bool accumulate = false) {
  detail::assert_accessible<ExecutionSpace, OutView, PositionsView>();
  ScopedRegion region("trident::ops::position_embedding_forward");
  const char* op = "trident::ops::position_embedding_forward";
  const std::int64_t c = detail::extent(out, 1);
  detail::require_positions(out, T, detail::extent(positions, 0), op, "positions");
  require_argument(detail::extent(positions, 1) == c, op, ": out has ", c, " columns but positions has ",
                   positions.extent(1));
  Kokkos::View<const int*, typename OutView::memory_space> no_tokens;
  if (accumulate) {
    detail::launch_embedding_forward<ExecutionSpace, false, true, true>(space, op, out, no_tokens, positions, positions,
                                                                        T, 0);
  } else {
    detail::launch_embedding_forward<ExecutionSpace, false, true, false>(space, op, out, no_tokens, positions,
                                                                         positions, T, 0);
  }
}

// d_table[Vl, C] += dout rows gathered by token (tokens outside the shard skipped).
template <class ExecutionSpace, class DTableView, class DOutView, class TokenView>
void token_embedding_backward(const ExecutionSpace& space, const DTableView& d_table, const DOutView& dout,
                              const TokenView& tokens, int vocab_offset = 0) {
  detail::assert_accessible<ExecutionSpace, DTableView, DOutView, TokenView>();
  detail::assert_token_type<TokenView>();
  // Every row adds into the table in turn: in 16 bits each addition would round.
  static_assert(!is_half_precision_v<typename DTableView::non_const_value_type>,
                "trident::ops::token_embedding_backward: keep the table's gradient in float (or double)");
  ScopedRegion region("trident::ops::token_embedding_backward");
  const char* op = "trident::ops::token_embedding_backward";
  if (detail::is_empty(d_table)) return;
  const std::int64_t n = detail::extent(dout, 0), c = detail::extent(dout, 1);
  detail::require_length(tokens, n, op, "tokens");
  require_argument(detail::extent(d_table, 1) == c, op, ": dout has ", c, " columns but d_table has ",
                   d_table.extent(1));
  const int width = detail::column_block_width(space, c);
  using Functor = detail::TokenEmbeddingBackward<DTableView, DOutView, TokenView>;
  Kokkos::parallel_for(op, detail::IndexRange<ExecutionSpace>(space, 0, detail::column_block_count(c, width)),
                       Functor{d_table, dout, tokens, n, c, vocab_offset, detail::extent(d_table, 0), width});
}

// d_positions[t, C] += sum over sequences of dout[b * T + t]; rows of d_positions at or beyond T are untouched.
template <class ExecutionSpace, class DPositionsView, class DOutView>
void position_embedding_backward(const ExecutionSpace& space, const DPositionsView& d_positions, const DOutView& dout,
                                 int T) {
  detail::assert_accessible<ExecutionSpace, DPositionsView, DOutView>();
  ScopedRegion region("trident::ops::position_embedding_backward");
  const char* op = "trident::ops::position_embedding_backward";
  if (detail::is_empty(d_positions)) return;
  const std::int64_t c = detail::extent(dout, 1);
  detail::require_positions(dout, T, detail::extent(d_positions, 0), op, "d_positions");
  require_argument(detail::extent(d_positions, 1) == c, op, ": dout has ", c, " columns but d_positions has ",
                   d_positions.extent(1));
  detail::for_each_element(
      space, op, T, c,
      detail::PositionEmbeddingBackward<DPositionsView, DOutView>{d_positions, dout, T, detail::extent(dout, 0)});
}

// The same on rows [first_row, first_row + N) of whole sequences of length T, which need not be
// whole sequences themselves (a rank's share of the rows under sequence parallelism):
// out[n] += positions[(first_row + n) % T], and d_positions[t] += the rows at position t.
template <class ExecutionSpace, class OutView, class PositionsView>
void position_embedding_rows_forward(const ExecutionSpace& space, const OutView& out, const PositionsView& positions,
                                     int T, std::int64_t first_row) {
  detail::assert_accessible<ExecutionSpace, OutView, PositionsView>();
  ScopedRegion region("trident::ops::position_embedding_rows_forward");
  const char* op = "trident::ops::position_embedding_rows_forward";
  require_argument(T > 0 && detail::extent(positions, 0) >= T && first_row >= 0, op, ": T = ", T,
                   " rows of positions (it has ", positions.extent(0), ") from row ", first_row);
  require_argument(detail::extent(positions, 1) == detail::extent(out, 1), op, ": out has ", out.extent(1),
                   " columns but positions has ", positions.extent(1));
  Kokkos::View<const int*, typename OutView::memory_space> no_tokens;
  detail::launch_embedding_forward<ExecutionSpace, false, true, true>(space, op, out, no_tokens, positions, positions,
                                                                      T, 0, first_row);
}

template <class ExecutionSpace, class DPositionsView, class DOutView>
void position_embedding_rows_backward(const ExecutionSpace& space, const DPositionsView& d_positions,
                                      const DOutView& dout, int T, std::int64_t first_row) {
  detail::assert_accessible<ExecutionSpace, DPositionsView, DOutView>();
  ScopedRegion region("trident::ops::position_embedding_rows_backward");
  const char* op = "trident::ops::position_embedding_rows_backward";
  if (detail::is_empty(d_positions)) return;
  require_argument(T > 0 && detail::extent(d_positions, 0) >= T && first_row >= 0, op, ": T = ", T,
                   " rows of d_positions (it has ", d_positions.extent(0), ") from row ", first_row);
  require_argument(detail::extent(d_positions, 1) == detail::extent(dout, 1), op, ": dout has ", dout.extent(1),
                   " columns but d_positions has ", d_positions.extent(1));
  detail::for_each_element(space, op, T, detail::extent(dout, 1),
                           detail::PositionEmbeddingBackward<DPositionsView, DOutView>{
                               d_positions, dout, T, detail::extent(dout, 0), first_row});
}

// d_table += (token gather of dout), d_positions += (position sums of dout); either may be empty (skipped).
template <class ExecutionSpace, class DTableView, class DPositionsView, class DOutView, class TokenView>
void embedding_backward(const ExecutionSpace& space, const DTableView& d_table, const DPositionsView& d_positions,
                        const DOutView& dout, const TokenView& tokens, int T, int vocab_offset = 0) {
  ScopedRegion region("trident::ops::embedding_backward");
  token_embedding_backward(space, d_table, dout, tokens, vocab_offset);
  position_embedding_backward(space, d_positions, dout, T);
}

}  // namespace ops
}  // namespace trident
