#pragma once
// Token and position embeddings:
//   out[n, :] = wte[tokens[n] - vocab_offset, :] + wpe[n % T, :]
// The token table may be a shard of the vocabulary, rows [vocab_offset, vocab_offset + Vl):
// a token outside the shard contributes zeros (the vocabulary-parallel ranks' partial sums
// then add up to the full embedding). The position table may have more rows than T (GPT-2's
// wpe has one per position of the context window); rows [0, T) are used.
//
// The backward is deterministic: each column is accumulated by one thread walking the tokens
// in order, so repeated tokens add up in the same order on every run and every backend.

#include <trident/core/profiling.hpp>
#include <trident/ops/detail/checks.hpp>
#include <trident/ops/detail/launch.hpp>

#include <Kokkos_Core.hpp>

#include <cstdint>
#include <type_traits>

namespace trident {
namespace ops {
namespace detail {

template <class OutView, class TokenView, class WteView, class WpeView, bool WithTokens, bool WithPositions,
          bool Accumulate>
struct EmbeddingForward {
  using Scalar = typename OutView::non_const_value_type;
  OutView m_out;
  TokenView m_tokens;
  WteView m_wte;
  WpeView m_wpe;
  std::int64_t m_seq_len, m_vocab_offset, m_vocab_local;
  std::int64_t m_first_row = 0;  // the global row of out's row 0 (its position is first_row % T)

  KOKKOS_FUNCTION void operator()(const std::int64_t n, const std::int64_t c) const {
    Scalar value = 0;
    if (WithTokens) {
      const std::int64_t row = static_cast<std::int64_t>(m_tokens(n)) - m_vocab_offset;
      if (row >= 0 && row < m_vocab_local) value = m_wte(row, c);
    }
    if (WithPositions) value += m_wpe((m_first_row + n) % m_seq_len, c);
    if (Accumulate) {
      m_out(n, c) += value;
    } else {
      m_out(n, c) = value;
    }
  }
};

// dwte[tokens[n] - vocab_offset, c] += dout[n, c] for the tokens in the shard; one work item
// per block of Width columns, tokens in order.
template <class DWteView, class DOutView, class TokenView, int Width>
struct TokenEmbeddingBackward {
  DWteView m_dwte;
  DOutView m_dout;
  TokenView m_tokens;
  std::int64_t m_rows, m_cols, m_vocab_offset, m_vocab_local;

  KOKKOS_FUNCTION void operator()(const std::int64_t block) const {
    const std::int64_t c0 = block * Width;
    const int width = c0 + Width <= m_cols ? Width : static_cast<int>(m_cols - c0);
    for (std::int64_t n = 0; n < m_rows; ++n) {
      const std::int64_t row = static_cast<std::int64_t>(m_tokens(n)) - m_vocab_offset;
      if (row < 0 || row >= m_vocab_local) continue;
      if (width == Width) {
        for (int j = 0; j < Width; ++j) m_dwte(row, c0 + j) += m_dout(n, c0 + j);
      } else {
        for (int j = 0; j < width; ++j) m_dwte(row, c0 + j) += m_dout(n, c0 + j);
      }
    }
  }
};

// dwpe[t, c] += sum of dout[n, c] over the rows n at position t, in order: the rows are global
// rows [first_row, first_row + rows) of whole sequences of length T.
template <class DWpeView, class DOutView>
struct PositionEmbeddingBackward {
  using Scalar = typename DWpeView::non_const_value_type;
  DWpeView m_dwpe;
  DOutView m_dout;
  std::int64_t m_seq_len, m_rows, m_first_row = 0;
  KOKKOS_FUNCTION void operator()(const std::int64_t t, const std::int64_t c) const {
    Scalar total = 0;
    const std::int64_t first = ((t - m_first_row % m_seq_len) + m_seq_len) % m_seq_len;
    for (std::int64_t n = first; n < m_rows; n += m_seq_len) total += m_dout(n, c);
    m_dwpe(t, c) += total;
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
          class WteView, class WpeView>
void launch_embedding_forward(const ExecutionSpace& space, const char* label, const OutView& out,
                              const TokenView& tokens, const WteView& wte, const WpeView& wpe, std::int64_t seq_len,
                              std::int64_t vocab_offset, std::int64_t first_row = 0) {
  using Functor = EmbeddingForward<OutView, TokenView, WteView, WpeView, WithTokens, WithPositions, Accumulate>;
  for_each_element(space, label, extent(out, 0), extent(out, 1),
                   Functor{out, tokens, wte, wpe, seq_len, vocab_offset, WithTokens ? extent(wte, 0) : 0, first_row});
}

}  // namespace detail

// out[N, C] = wte[tokens[n] - vocab_offset] (zero outside the shard) + wpe[n % T]
template <class ExecutionSpace, class OutView, class TokenView, class WteView, class WpeView>
void embedding_forward(const ExecutionSpace& space, const OutView& out, const TokenView& tokens, const WteView& wte,
                       const WpeView& wpe, int T, int vocab_offset = 0) {
  detail::assert_accessible<ExecutionSpace, OutView, TokenView, WteView, WpeView>();
  detail::assert_token_type<TokenView>();
  ScopedRegion region("trident::ops::embedding_forward");
  const char* op = "trident::ops::embedding_forward";
  const std::int64_t n = detail::extent(out, 0), c = detail::extent(out, 1);
  detail::require_length(tokens, n, op, "tokens");
  detail::require_positions(out, T, detail::extent(wpe, 0), op, "wpe");
  require_argument(detail::extent(wte, 1) == c && detail::extent(wpe, 1) == c, op, ": out has ", c, " columns, wte ",
                   wte.extent(1), " and wpe ", wpe.extent(1));
  detail::launch_embedding_forward<ExecutionSpace, true, true, false>(space, op, out, tokens, wte, wpe, T,
                                                                      vocab_offset);
}

// out[N, C] = wte[tokens[n] - vocab_offset] (zero outside the shard): no positions, so that
// vocabulary-parallel ranks can sum their shards first and add the positions once.
template <class ExecutionSpace, class OutView, class TokenView, class WteView>
void token_embedding_forward(const ExecutionSpace& space, const OutView& out, const TokenView& tokens,
                             const WteView& wte, int vocab_offset = 0) {
  detail::assert_accessible<ExecutionSpace, OutView, TokenView, WteView>();
  detail::assert_token_type<TokenView>();
  ScopedRegion region("trident::ops::token_embedding_forward");
  const char* op = "trident::ops::token_embedding_forward";
  const std::int64_t n = detail::extent(out, 0), c = detail::extent(out, 1);
  detail::require_length(tokens, n, op, "tokens");
  require_argument(detail::extent(wte, 1) == c, op, ": out has ", c, " columns but wte has ", wte.extent(1));
  detail::launch_embedding_forward<ExecutionSpace, true, false, false>(space, op, out, tokens, wte, wte, 1,
                                                                       vocab_offset);
}

// out[N, C] (=, or += with accumulate) wpe[n % T]
template <class ExecutionSpace, class OutView, class WpeView>
void position_embedding_forward(const ExecutionSpace& space, const OutView& out, const WpeView& wpe, int T,
                                bool accumulate = false) {
  detail::assert_accessible<ExecutionSpace, OutView, WpeView>();
  ScopedRegion region("trident::ops::position_embedding_forward");
  const char* op = "trident::ops::position_embedding_forward";
  const std::int64_t c = detail::extent(out, 1);
  detail::require_positions(out, T, detail::extent(wpe, 0), op, "wpe");
  require_argument(detail::extent(wpe, 1) == c, op, ": out has ", c, " columns but wpe has ", wpe.extent(1));
  Kokkos::View<const int*, typename OutView::memory_space> no_tokens;
  if (accumulate) {
    detail::launch_embedding_forward<ExecutionSpace, false, true, true>(space, op, out, no_tokens, wpe, wpe, T, 0);
  } else {
    detail::launch_embedding_forward<ExecutionSpace, false, true, false>(space, op, out, no_tokens, wpe, wpe, T, 0);
  }
}

// dwte[Vl, C] += dout rows gathered by token (tokens outside the shard skipped).
template <class ExecutionSpace, class DWteView, class DOutView, class TokenView>
void token_embedding_backward(const ExecutionSpace& space, const DWteView& dwte, const DOutView& dout,
                              const TokenView& tokens, int vocab_offset = 0) {
  detail::assert_accessible<ExecutionSpace, DWteView, DOutView, TokenView>();
  detail::assert_token_type<TokenView>();
  ScopedRegion region("trident::ops::token_embedding_backward");
  const char* op = "trident::ops::token_embedding_backward";
  if (detail::is_empty(dwte)) return;
  const std::int64_t n = detail::extent(dout, 0), c = detail::extent(dout, 1);
  detail::require_length(tokens, n, op, "tokens");
  require_argument(detail::extent(dwte, 1) == c, op, ": dout has ", c, " columns but dwte has ", dwte.extent(1));
  constexpr int width = detail::column_block_width<ExecutionSpace>();
  using Functor = detail::TokenEmbeddingBackward<DWteView, DOutView, TokenView, width>;
  Kokkos::parallel_for(op, detail::IndexRange<ExecutionSpace>(space, 0, (c + width - 1) / width),
                       Functor{dwte, dout, tokens, n, c, vocab_offset, detail::extent(dwte, 0)});
}

// dwpe[t, C] += sum over sequences of dout[b * T + t]; rows of dwpe at or beyond T are untouched.
template <class ExecutionSpace, class DWpeView, class DOutView>
void position_embedding_backward(const ExecutionSpace& space, const DWpeView& dwpe, const DOutView& dout, int T) {
  detail::assert_accessible<ExecutionSpace, DWpeView, DOutView>();
  ScopedRegion region("trident::ops::position_embedding_backward");
  const char* op = "trident::ops::position_embedding_backward";
  if (detail::is_empty(dwpe)) return;
  const std::int64_t c = detail::extent(dout, 1);
  detail::require_positions(dout, T, detail::extent(dwpe, 0), op, "dwpe");
  require_argument(detail::extent(dwpe, 1) == c, op, ": dout has ", c, " columns but dwpe has ", dwpe.extent(1));
  detail::for_each_element(
      space, op, T, c, detail::PositionEmbeddingBackward<DWpeView, DOutView>{dwpe, dout, T, detail::extent(dout, 0)});
}

// The same on rows [first_row, first_row + N) of whole sequences of length T, which need not be
// whole sequences themselves (a rank's share of the rows under sequence parallelism):
// out[n] += wpe[(first_row + n) % T], and dwpe[t] += the rows at position t.
template <class ExecutionSpace, class OutView, class WpeView>
void position_embedding_rows_forward(const ExecutionSpace& space, const OutView& out, const WpeView& wpe, int T,
                                     std::int64_t first_row) {
  detail::assert_accessible<ExecutionSpace, OutView, WpeView>();
  ScopedRegion region("trident::ops::position_embedding_rows_forward");
  const char* op = "trident::ops::position_embedding_rows_forward";
  require_argument(T > 0 && detail::extent(wpe, 0) >= T && first_row >= 0, op, ": T = ", T, " rows of wpe (it has ",
                   wpe.extent(0), ") from row ", first_row);
  require_argument(detail::extent(wpe, 1) == detail::extent(out, 1), op, ": out has ", out.extent(1),
                   " columns but wpe has ", wpe.extent(1));
  Kokkos::View<const int*, typename OutView::memory_space> no_tokens;
  detail::launch_embedding_forward<ExecutionSpace, false, true, true>(space, op, out, no_tokens, wpe, wpe, T, 0,
                                                                      first_row);
}

template <class ExecutionSpace, class DWpeView, class DOutView>
void position_embedding_rows_backward(const ExecutionSpace& space, const DWpeView& dwpe, const DOutView& dout, int T,
                                      std::int64_t first_row) {
  detail::assert_accessible<ExecutionSpace, DWpeView, DOutView>();
  ScopedRegion region("trident::ops::position_embedding_rows_backward");
  const char* op = "trident::ops::position_embedding_rows_backward";
  if (detail::is_empty(dwpe)) return;
  require_argument(T > 0 && detail::extent(dwpe, 0) >= T && first_row >= 0, op, ": T = ", T, " rows of dwpe (it has ",
                   dwpe.extent(0), ") from row ", first_row);
  require_argument(detail::extent(dwpe, 1) == detail::extent(dout, 1), op, ": dout has ", dout.extent(1),
                   " columns but dwpe has ", dwpe.extent(1));
  detail::for_each_element(
      space, op, T, detail::extent(dout, 1),
      detail::PositionEmbeddingBackward<DWpeView, DOutView>{dwpe, dout, T, detail::extent(dout, 0), first_row});
}

// dwte += (token gather of dout), dwpe += (position sums of dout); either may be empty (skipped).
template <class ExecutionSpace, class DWteView, class DWpeView, class DOutView, class TokenView>
void embedding_backward(const ExecutionSpace& space, const DWteView& dwte, const DWpeView& dwpe, const DOutView& dout,
                        const TokenView& tokens, int T, int vocab_offset = 0) {
  ScopedRegion region("trident::ops::embedding_backward");
  token_embedding_backward(space, dwte, dout, tokens, vocab_offset);
  position_embedding_backward(space, dwpe, dout, T);
}

}  // namespace ops
}  // namespace trident
