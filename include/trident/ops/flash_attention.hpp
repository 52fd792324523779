#pragma once
// Causal attention that keeps one log-sum-exp per row instead of the probabilities (the
// flash kernel of AttentionBuffers), forward and backward side by side. Two ways to run it:
//
// - Row blocks of GEMMs (host spaces): for each (b, h) and causal block of rows [r0, r1), the
//   block's scores against keys [0, r1) are one BLAS product into a [block, T] scratch, their
//   softmax is taken in place, and the output is one more product. The backward recomputes the
//   block's probabilities as exp(S - log_sum_exp), so the scratch holds one block, never T x T.
// - Tiles in team scratch (devices): one team per (b, h) and tile of queries walks the key
//   tiles with an online softmax (running maximum and sum, the output rescaled as the maximum
//   grows). The backward runs one team per key tile for dK and dV and one per query tile for
//   dQ, so every gradient is written by one team, without atomics, the same on every run.
//
// Both use the softmax backward dS = scale * P * (dP - D), with D = rowsum(dY * Y) computed once
// from the forward's output, as FlashAttention-2 does.

#include <trident/core/compat.hpp>
#include <trident/core/error.hpp>
#include <trident/core/profiling.hpp>
#include <trident/ops/attention_buffers.hpp>
#include <trident/ops/detail/attention_heads.hpp>
#include <trident/ops/detail/checks.hpp>
#include <trident/ops/detail/fast_math.hpp>
#include <trident/ops/detail/launch.hpp>
#include <trident/ops/matmul.hpp>

#include <Kokkos_Core.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>

namespace trident {
namespace ops {
namespace detail {

// D(b * H + h, t) = sum_d dY[b, t, h, d] * Y[b, t, h, d], from the rows of the output and its
// gradient.
template <class DotsView, class OutView, class DOutView>
struct HeadRowDots {
  using Scalar = typename DotsView::non_const_value_type;
  DotsView m_dots;
  OutView m_out;
  DOutView m_dout;
  std::int64_t m_seq_len, m_heads, m_head_dim;

  KOKKOS_FUNCTION void operator()(const std::int64_t index) const {
    const std::int64_t n = index / m_heads, h = index % m_heads;
    const auto* y = &m_out(n, h * m_head_dim);
    const auto* dy = &m_dout(n, h * m_head_dim);
    Scalar sum = 0;
    for (std::int64_t d = 0; d < m_head_dim; ++d) sum += static_cast<Scalar>(dy[d]) * static_cast<Scalar>(y[d]);
    m_dots((n / m_seq_len) * m_heads + h, n % m_seq_len) = sum;
  }
};

template <class ExecutionSpace, class Buffers, class OutView, class DOutView>
void head_row_dots(const ExecutionSpace& space, const Buffers& buffers, const OutView& out, const DOutView& dout) {
  const std::int64_t n = extent(out, 0);
  Kokkos::parallel_for("trident::ops::flash_attention_row_dots",
                       IndexRange<ExecutionSpace>(space, 0, n * buffers.heads),
                       HeadRowDots<typename Buffers::scores_view, OutView, DOutView>{
                           buffers.row_dots, out, dout, buffers.seq_len, buffers.heads, buffers.head_dim});
}

// ---- row blocks of GEMMs (host spaces) ----

// One row of causal block [r0, r1) of (b, h) in a [rows, r1] scratch of scaled scores becomes
// its probabilities, zero right of the diagonal: in the forward their softmax, keeping the row's
// log-sum-exp; in the backward (m_recompute) exp(S - log_sum_exp) from the kept one.
template <class KeptView>
struct FlashProbabilitiesRow {
  using Scalar = typename KeptView::non_const_value_type;
  Scalar* m_block;
  std::int64_t m_width, m_first_row, m_bh;
  KeptView m_log_sum_exp;
  bool m_recompute;

  template <class Row>
  KOKKOS_FUNCTION void operator()(const std::int64_t local_row, const Row& row) const {
    const std::int64_t t = m_first_row + local_row, visible = t + 1;
    Scalar* p = m_block + local_row * m_width;
    if (m_recompute) {
      const Scalar lse = m_log_sum_exp(m_bh, t);
      row.for_each(visible, [=](std::int64_t j) { p[j] = fast_exp(static_cast<Scalar>(p[j] - lse)); });
    } else {
      const Scalar max = row.max(visible, [&](std::int64_t j) { return p[j]; });
      row.for_each(visible, [=](std::int64_t j) { p[j] = fast_exp(static_cast<Scalar>(p[j] - max)); });
      const Scalar sum = row.sum(visible, [&](std::int64_t j) { return p[j]; });
      const Scalar inv = Scalar(1) / sum;
      row.for_each(visible, [&](std::int64_t j) { p[j] *= inv; });
      row.single([&]() { m_log_sum_exp(m_bh, t) = max + math::log(sum); });
    }
    row.for_each(m_width - visible, [&](std::int64_t j) { p[visible + j] = Scalar(0); });
  }
};

// dS = scale * P * (dP - D), in place over dP (P is zero right of the diagonal, so is dS).
template <class DotsView>
struct FlashScoresGradientRow {
  using Scalar = typename DotsView::non_const_value_type;
  Scalar* m_gradient;
  const Scalar* m_probs;
  std::int64_t m_width, m_first_row, m_bh;
  DotsView m_dots;
  Scalar m_scale;

  template <class Row>
  KOKKOS_FUNCTION void operator()(const std::int64_t local_row, const Row& row) const {
    const std::int64_t t = m_first_row + local_row;
    Scalar* d = m_gradient + local_row * m_width;
    const Scalar* p = m_probs + local_row * m_width;
    const Scalar dot = m_dots(m_bh, t);
    row.for_each(m_width, [&](std::int64_t j) { d[j] = m_scale * p[j] * (d[j] - dot); });
  }
};

// How many (b, h) pairs the row blocks may run at once: the buffers hold two row blocks of
// scratch for each.
template <class Buffers>
std::int64_t row_block_slots(const Buffers& buffers) {
  return static_cast<std::int64_t>(buffers.dscores.extent(0) / 2);
}

template <class ExecutionSpace, class Buffers>
void flash_forward_row_blocks(const ExecutionSpace& space, const Buffers& buffers) {
  using Scalar = typename Buffers::scores_view::non_const_value_type;
  const Scalar scale = Scalar(1) / std::sqrt(static_cast<Scalar>(buffers.head_dim));
  const CausalBlocks& blocks = buffers.blocks;
  for_each_head(
      space, buffers.batch, buffers.heads, blocks, false, row_block_slots(buffers),
      [&](std::int64_t slot, std::int64_t b, std::int64_t h, std::int64_t i) {
        const HeadBlock<Buffers> head{buffers, static_cast<int>(b), static_cast<int>(h)};
        const std::int64_t r0 = blocks.row_begin(i), r1 = blocks.row_end(i);
        const auto probs = head.tile(buffers.dscores, static_cast<int>(2 * slot), i);
        matmul(space, 'N', 'T', scale, head.rows(buffers.q, r0, r1), head.rows(buffers.k, 0, r1), Scalar(0), probs);
        for_each_row_on_this_thread(
            r1 - r0, FlashProbabilitiesRow<typename Buffers::scores_view>{probs.data(), r1, r0, b * buffers.heads + h,
                                                                          buffers.log_sum_exp, false});
        matmul(space, 'N', 'N', Scalar(1), probs, head.rows(buffers.v, 0, r1), Scalar(0), head.rows(buffers.y, r0, r1));
      });
}

// Blocks from the last one, which spans all keys and writes dV and dK (beta = 0); the others
// add to them. buffers.y holds dY.
template <class ExecutionSpace, class Buffers>
void flash_backward_row_blocks(const ExecutionSpace& space, const Buffers& buffers) {
  using Scalar = typename Buffers::scores_view::non_const_value_type;
  const Scalar scale = Scalar(1) / std::sqrt(static_cast<Scalar>(buffers.head_dim));
  const CausalBlocks& blocks = buffers.blocks;
  const std::int64_t last = blocks.count() - 1;
  for_each_head(
      space, buffers.batch, buffers.heads, blocks, true, row_block_slots(buffers),
      [&](std::int64_t slot, std::int64_t b, std::int64_t h, std::int64_t i) {
        const HeadBlock<Buffers> head{buffers, static_cast<int>(b), static_cast<int>(h)};
        const std::int64_t r0 = blocks.row_begin(i), r1 = blocks.row_end(i), bh = b * buffers.heads + h;
        const auto probs = head.tile(buffers.dscores, static_cast<int>(2 * slot), i);
        const auto gradient = head.tile(buffers.dscores, static_cast<int>(2 * slot + 1), i);
        const auto q = head.rows(buffers.q, r0, r1), k = head.rows(buffers.k, 0, r1);
        const auto v = head.rows(buffers.v, 0, r1), dy = head.rows(buffers.y, r0, r1);
        const Scalar beta = i == last ? Scalar(0) : Scalar(1);
        matmul(space, 'N', 'T', scale, q, k, Scalar(0), probs);
        for_each_row_on_this_thread(r1 - r0, FlashProbabilitiesRow<typename Buffers::scores_view>{
                                                 probs.data(), r1, r0, bh, buffers.log_sum_exp, true});
        matmul(space, 'T', 'N', Scalar(1), probs, dy, beta, head.rows(buffers.dv, 0, r1));  // dV += P^T dY
        matmul(space, 'N', 'T', Scalar(1), dy, v, Scalar(0), gradient);                     // dP = dY V^T
        for_each_row_on_this_thread(r1 - r0, FlashScoresGradientRow<typename Buffers::scores_view>{
                                                 gradient.data(), probs.data(), r1, r0, bh, buffers.row_dots, scale});
        matmul(space, 'N', 'N', Scalar(1), gradient, k, Scalar(0), head.rows(buffers.dq, r0, r1));  // dQ = dS K
        matmul(space, 'T', 'N', Scalar(1), gradient, q, beta, head.rows(buffers.dk, 0, r1));        // dK += dS^T Q
      });
}

// ---- tiles in team scratch (devices) ----

template <class ExecutionSpace, class Scalar>
struct FlashTiles {
  using scratch_space = typename ExecutionSpace::scratch_memory_space;
  using matrix = Kokkos::View<Scalar**, Kokkos::LayoutRight, scratch_space, Kokkos::MemoryTraits<Kokkos::Unmanaged>>;
  using vector = Kokkos::View<Scalar*, Kokkos::LayoutRight, scratch_space, Kokkos::MemoryTraits<Kokkos::Unmanaged>>;

  // Team scratch of `matrices` [tile, head_dim] tiles, one [tile, tile] score tile and
  // `vectors` per-row numbers.
  static std::size_t bytes(int tile, int head_dim, int matrices, int vectors) {
    return matrices * matrix::shmem_size(tile, head_dim) + matrix::shmem_size(tile, tile) +
           vectors * vector::shmem_size(tile);
  }
  // The most any of the three kernels asks (the dK, dV one: six tiles and two vectors).
  static std::size_t most_bytes(int tile, int head_dim) { return bytes(tile, head_dim, 6, 2); }
};

// Queries and keys per tile: `requested`, or the largest power of two up to 64 whose tiles fit
// the team scratch of ExecutionSpace.
template <class ExecutionSpace, class Scalar>
int flash_tile_size(int head_dim, int requested) {
  using Tiles = FlashTiles<ExecutionSpace, Scalar>;
  const auto limit = static_cast<std::size_t>(Kokkos::TeamPolicy<ExecutionSpace>::scratch_size_max(0));
  if (requested > 0) {
    require_argument(Tiles::most_bytes(requested, head_dim) <= limit, "trident::ops::flash attention: tiles of ",
                     requested, " rows of head_dim ", head_dim, " need ", Tiles::most_bytes(requested, head_dim),
                     " bytes of team scratch, more than the ", limit, " this execution space has");
    return requested;
  }
  for (int tile = 64; tile >= 1; tile /= 2)
    if (Tiles::most_bytes(tile, head_dim) <= limit) return tile;
  throw InvalidArgument(trident::detail::concat("trident::ops::flash attention: head_dim ", head_dim,
                                                " does not fit the ", limit, " bytes of team scratch"));
}

// The three passes of the team path, one work tag each: the forward (one team per query tile),
// dK and dV (one team per key tile, from every query tile at or below it) and dQ (one team per
// query tile, from every key tile at or left of it). buffers.y holds dY in the backward.
struct FlashForward {};
struct FlashKeyGradients {};
struct FlashQueryGradients {};

template <class ExecutionSpace, class Buffers>
struct FlashTeams {
  using Scalar = typename Buffers::scores_view::non_const_value_type;
  using Tiles = FlashTiles<ExecutionSpace, Scalar>;
  using Member = typename Kokkos::TeamPolicy<ExecutionSpace>::member_type;
  using heads_view = typename Buffers::heads_view;
  using scores_view = typename Buffers::scores_view;

  heads_view m_q, m_k, m_v, m_y, m_dq, m_dk, m_dv;
  scores_view m_log_sum_exp, m_dots;
  int m_heads, m_seq_len, m_head_dim, m_tile, m_tiles;
  Scalar m_scale;

  FlashTeams(const Buffers& b, int tile)
      : m_q(b.q),
        m_k(b.k),
        m_v(b.v),
        m_y(b.y),
        m_dq(b.dq),
        m_dk(b.dk),
        m_dv(b.dv),
        m_log_sum_exp(b.log_sum_exp),
        m_dots(b.row_dots),
        m_heads(b.heads),
        m_seq_len(b.seq_len),
        m_head_dim(b.head_dim),
        m_tile(tile),
        m_tiles((b.seq_len + tile - 1) / tile),
        m_scale(Scalar(1) / std::sqrt(static_cast<Scalar>(b.head_dim))) {}

  int league_size(int batch) const { return batch * m_heads * m_tiles; }

  KOKKOS_INLINE_FUNCTION int extent_from(int first) const {
    return m_seq_len - first < m_tile ? m_seq_len - first : m_tile;
  }

  // tile(r, d) = from(b, h, first + r, d) for r < rows.
  KOKKOS_INLINE_FUNCTION void load(const Member& team, const typename Tiles::matrix& tile, const heads_view& from,
                                   int b, int h, int first, int rows) const {
    const int hd = m_head_dim;
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, rows * hd),
                         [&](const int i) { tile(i / hd, i % hd) = from(b, h, first + i / hd, i % hd); });
  }
  KOKKOS_INLINE_FUNCTION void store(const Member& team, const heads_view& to, const typename Tiles::matrix& tile, int b,
                                    int h, int first, int rows) const {
    const int hd = m_head_dim;
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, rows * hd),
                         [&](const int i) { to(b, h, first + i / hd, i % hd) = tile(i / hd, i % hd); });
  }
  KOKKOS_INLINE_FUNCTION Scalar dot(const typename Tiles::matrix& a, int i, const typename Tiles::matrix& b,
                                    int j) const {
    Scalar sum = 0;
    for (int d = 0; d < m_head_dim; ++d) sum += a(i, d) * b(j, d);
    return sum;
  }
  // A query tile for the backward: Q, dY, and each row's log-sum-exp and D.
  KOKKOS_INLINE_FUNCTION void load_queries(const Member& team, const typename Tiles::matrix& q,
                                           const typename Tiles::matrix& dy, const typename Tiles::vector& lse,
                                           const typename Tiles::vector& dots, int bh, int b, int h, int r0,
                                           int rows) const {
    load(team, q, m_q, b, h, r0, rows);
    load(team, dy, m_y, b, h, r0, rows);
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, rows), [&](const int r) {
      lse(r) = m_log_sum_exp(bh, r0 + r);
      dots(r) = m_dots(bh, r0 + r);
    });
  }
  // s(r, c) = exp(scale * q_r . k_c - log_sum_exp_r) where key c0 + c is visible from query
  // r0 + r, else 0: the probabilities, recomputed.
  KOKKOS_INLINE_FUNCTION void probabilities(const Member& team, const typename Tiles::matrix& s,
                                            const typename Tiles::matrix& q, const typename Tiles::matrix& k,
                                            const typename Tiles::vector& lse, int r0, int rows, int c0,
                                            int cols) const {
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, rows * cols), [&](const int i) {
      const int r = i / cols, c = i % cols;
      s(r, c) = c0 + c <= r0 + r ? fast_exp(static_cast<Scalar>(m_scale * dot(q, r, k, c) - lse(r))) : Scalar(0);
    });
  }
  // s = scale * P * (dY V^T - D), in place over the probabilities P.
  KOKKOS_INLINE_FUNCTION void scores_gradient(const Member& team, const typename Tiles::matrix& s,
                                              const typename Tiles::matrix& dy, const typename Tiles::matrix& v,
                                              const typename Tiles::vector& dots, int rows, int cols) const {
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, rows * cols), [&](const int i) {
      const int r = i / cols, c = i % cols;
      s(r, c) = m_scale * s(r, c) * (dot(dy, r, v, c) - dots(r));
    });
  }
  // to(i, d) += sum_j s(i, j) x(j, d) for the tile's first `count` rows i and `inner` terms j;
  // transposed: s(j, i) instead.
  KOKKOS_INLINE_FUNCTION void add_product(const Member& team, const typename Tiles::matrix& to,
                                          const typename Tiles::matrix& s, const typename Tiles::matrix& x, int count,
                                          int inner, bool transposed) const {
    const int hd = m_head_dim;
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, count * hd), [&](const int e) {
      const int i = e / hd, d = e % hd;
      Scalar sum = to(i, d);
      for (int j = 0; j < inner; ++j) sum += (transposed ? s(j, i) : s(i, j)) * x(j, d);
      to(i, d) = sum;
    });
  }

  // Which (b, h) and which tile of rows a team works on.
  struct Position {
    int bh, b, h, first, count;
  };
  KOKKOS_INLINE_FUNCTION Position position(const Member& team) const {
    const int bh = team.league_rank() / m_tiles, first = (team.league_rank() % m_tiles) * m_tile;
    return {bh, bh / m_heads, bh % m_heads, first, extent_from(first)};
  }

  // Team scratch of each pass: [tile, head_dim] tiles, the score tile, per-row numbers.
  static std::size_t scratch_bytes(FlashForward, int tile, int head_dim) { return Tiles::bytes(tile, head_dim, 4, 2); }
  static std::size_t scratch_bytes(FlashKeyGradients, int tile, int head_dim) {
    return Tiles::bytes(tile, head_dim, 6, 2);
  }
  static std::size_t scratch_bytes(FlashQueryGradients, int tile, int head_dim) {
    return Tiles::bytes(tile, head_dim, 5, 2);
  }

  KOKKOS_FUNCTION void operator()(FlashForward, const Member& team) const {
    const int tile = m_tile, hd = m_head_dim;
    const Position at = position(team);
    const int bh = at.bh, b = at.b, h = at.h, r0 = at.first, rows = at.count;
    const auto scratch = team.team_scratch(0);
    typename Tiles::matrix q(scratch, tile, hd), k(scratch, tile, hd), v(scratch, tile, hd), o(scratch, tile, hd),
        s(scratch, tile, tile);
    typename Tiles::vector running_max(scratch, tile), running_sum(scratch, tile);
    load(team, q, m_q, b, h, r0, rows);
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, rows * hd), [&](const int i) { o(i / hd, i % hd) = 0; });
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, rows), [&](const int r) {
      running_max(r) = Scalar(-1e30);  // finite, so exp(old - new) is 0, never NaN
      running_sum(r) = 0;
    });
    team.team_barrier();
    for (int c0 = 0; c0 < r0 + rows; c0 += tile) {  // the key tiles at or left of the diagonal
      const int cols = extent_from(c0);
      load(team, k, m_k, b, h, c0, cols);
      load(team, v, m_v, b, h, c0, cols);
      team.team_barrier();
      Kokkos::parallel_for(Kokkos::TeamThreadRange(team, rows * cols), [&](const int i) {
        const int r = i / cols, c = i % cols;
        s(r, c) = m_scale * dot(q, r, k, c);
      });
      team.team_barrier();
      // Row by row: the new maximum, the tile's probabilities against it, the running sum and
      // the output so far rescaled to it.
      Kokkos::parallel_for(Kokkos::TeamThreadRange(team, rows), [&](const int r) {
        const int visible = r0 + r - c0 + 1 < cols ? r0 + r - c0 + 1 : cols;  // >= 1: key c0 <= r0 + r
        Scalar max = running_max(r);
        for (int c = 0; c < visible; ++c) max = s(r, c) > max ? s(r, c) : max;
        Scalar sum = 0;
        for (int c = 0; c < cols; ++c) {
          const Scalar p = c < visible ? fast_exp(static_cast<Scalar>(s(r, c) - max)) : Scalar(0);
          s(r, c) = p;
          sum += p;
        }
        const Scalar factor = fast_exp(static_cast<Scalar>(running_max(r) - max));
        running_sum(r) = factor * running_sum(r) + sum;
        running_max(r) = max;
        for (int d = 0; d < hd; ++d) o(r, d) *= factor;
      });
      team.team_barrier();
      add_product(team, o, s, v, rows, cols, false);  // O += P V
      team.team_barrier();
    }
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, rows * hd), [&](const int i) {
      const int r = i / hd, d = i % hd;
      m_y(b, h, r0 + r, d) = o(r, d) / running_sum(r);
    });
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, rows),
                         [&](const int r) { m_log_sum_exp(bh, r0 + r) = running_max(r) + math::log(running_sum(r)); });
  }

  KOKKOS_FUNCTION void operator()(FlashKeyGradients, const Member& team) const {
    const int tile = m_tile, hd = m_head_dim;
    const Position at = position(team);
    const int bh = at.bh, b = at.b, h = at.h, c0 = at.first, cols = at.count;
    const auto scratch = team.team_scratch(0);
    typename Tiles::matrix k(scratch, tile, hd), v(scratch, tile, hd), dk(scratch, tile, hd), dv(scratch, tile, hd),
        q(scratch, tile, hd), dy(scratch, tile, hd), s(scratch, tile, tile);
    typename Tiles::vector lse(scratch, tile), dots(scratch, tile);
    load(team, k, m_k, b, h, c0, cols);
    load(team, v, m_v, b, h, c0, cols);
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, cols * hd), [&](const int i) {
      dk(i / hd, i % hd) = 0;
      dv(i / hd, i % hd) = 0;
    });
    for (int r0 = c0; r0 < m_seq_len; r0 += tile) {  // query tiles that see these keys
      const int rows = extent_from(r0);
      team.team_barrier();
      load_queries(team, q, dy, lse, dots, bh, b, h, r0, rows);
      team.team_barrier();
      probabilities(team, s, q, k, lse, r0, rows, c0, cols);
      team.team_barrier();
      add_product(team, dv, s, dy, cols, rows, true);  // dV += P^T dY
      team.team_barrier();
      scores_gradient(team, s, dy, v, dots, rows, cols);
      team.team_barrier();
      add_product(team, dk, s, q, cols, rows, true);  // dK += dS^T Q
    }
    team.team_barrier();
    store(team, m_dk, dk, b, h, c0, cols);
    store(team, m_dv, dv, b, h, c0, cols);
  }

  KOKKOS_FUNCTION void operator()(FlashQueryGradients, const Member& team) const {
    const int tile = m_tile, hd = m_head_dim;
    const Position at = position(team);
    const int bh = at.bh, b = at.b, h = at.h, r0 = at.first, rows = at.count;
    const auto scratch = team.team_scratch(0);
    typename Tiles::matrix q(scratch, tile, hd), dy(scratch, tile, hd), dq(scratch, tile, hd), k(scratch, tile, hd),
        v(scratch, tile, hd), s(scratch, tile, tile);
    typename Tiles::vector lse(scratch, tile), dots(scratch, tile);
    load_queries(team, q, dy, lse, dots, bh, b, h, r0, rows);
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, rows * hd), [&](const int i) { dq(i / hd, i % hd) = 0; });
    for (int c0 = 0; c0 < r0 + rows; c0 += tile) {
      const int cols = extent_from(c0);
      team.team_barrier();
      load(team, k, m_k, b, h, c0, cols);
      load(team, v, m_v, b, h, c0, cols);
      team.team_barrier();
      probabilities(team, s, q, k, lse, r0, rows, c0, cols);
      team.team_barrier();
      scores_gradient(team, s, dy, v, dots, rows, cols);
      team.team_barrier();
      add_product(team, dq, s, k, rows, cols, false);  // dQ += dS K
    }
    team.team_barrier();
    store(team, m_dq, dq, b, h, r0, rows);
  }
};

template <class Pass, class ExecutionSpace, class Buffers>
void run_flash_teams(const ExecutionSpace& space, const char* label, const FlashTeams<ExecutionSpace, Buffers>& teams,
                     int batch) {
  using Policy = Kokkos::TeamPolicy<ExecutionSpace, Pass>;
  const auto bytes = static_cast<int>(teams.scratch_bytes(Pass{}, teams.m_tile, teams.m_head_dim));
  Kokkos::parallel_for(
      label, Policy(space, teams.league_size(batch), Kokkos::AUTO).set_scratch_size(0, Kokkos::PerTeam(bytes)), teams);
}

template <class ExecutionSpace, class Buffers>
void flash_forward_teams(const ExecutionSpace& space, const Buffers& buffers) {
  using Scalar = typename Buffers::scores_view::non_const_value_type;
  const FlashTeams<ExecutionSpace, Buffers> teams(
      buffers, flash_tile_size<ExecutionSpace, Scalar>(buffers.head_dim, buffers.flash_tile));
  run_flash_teams<FlashForward>(space, "trident::ops::flash_attention_forward", teams, buffers.batch);
}

template <class ExecutionSpace, class Buffers>
void flash_backward_teams(const ExecutionSpace& space, const Buffers& buffers) {
  using Scalar = typename Buffers::scores_view::non_const_value_type;
  const FlashTeams<ExecutionSpace, Buffers> teams(
      buffers, flash_tile_size<ExecutionSpace, Scalar>(buffers.head_dim, buffers.flash_tile));
  run_flash_teams<FlashKeyGradients>(space, "trident::ops::flash_attention_backward_keys", teams, buffers.batch);
  run_flash_teams<FlashQueryGradients>(space, "trident::ops::flash_attention_backward_queries", teams, buffers.batch);
}

// How the flash kernel runs: row blocks of GEMMs on host spaces, tiles in team scratch on
// devices (tests run the team path on the host too). Row blocks walk their rows on the calling
// host thread, so a device runs the teams whatever the path asked.
enum class FlashPath { automatic, row_blocks, teams };

template <class ExecutionSpace>
constexpr bool flash_uses_teams(FlashPath path) {
  return path == FlashPath::teams || !runs_on_host<ExecutionSpace>();
}

}  // namespace detail

// The flash kernel's forward: out[N, Cl] from qkv[N, 3 Cl], keeping buffers.log_sum_exp.
// Shapes are checked by the caller (attention_forward).
template <class ExecutionSpace, class OutView, class Buffers, class QkvView>
void flash_attention_forward(const ExecutionSpace& space, const OutView& out, const Buffers& buffers,
                             const QkvView& qkv, detail::FlashPath path = detail::FlashPath::automatic) {
  ScopedRegion region("trident::ops::flash_attention_forward");
  detail::split_qkv(space, buffers, qkv);
  if (detail::flash_uses_teams<ExecutionSpace>(path)) {
    detail::flash_forward_teams(space, buffers);
  } else {
    detail::flash_forward_row_blocks(space, buffers);
  }
  detail::merge_output(space, buffers, out);
}

// Its backward: dqkv (=, or += with accumulate) from dout, the forward's qkv and output.
template <class ExecutionSpace, class DQkvView, class DOutView, class Buffers, class QkvView, class OutView>
void flash_attention_backward(const ExecutionSpace& space, const DQkvView& dqkv, const DOutView& dout,
                              const Buffers& buffers, const QkvView& qkv, const OutView& out, bool accumulate,
                              detail::FlashPath path = detail::FlashPath::automatic) {
  ScopedRegion region("trident::ops::flash_attention_backward");
  detail::head_row_dots(space, buffers, out, dout);
  detail::split_qkv(space, buffers, qkv);
  detail::split_output_gradient(space, buffers, dout);
  if (detail::flash_uses_teams<ExecutionSpace>(path)) {
    detail::flash_backward_teams(space, buffers);
  } else {
    detail::flash_backward_row_blocks(space, buffers);
  }
  detail::merge_gradients(space, buffers, dqkv, accumulate);
}

}  // namespace ops
}  // namespace trident
