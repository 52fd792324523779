#pragma once
// How the operators map their loops onto an execution space.
//
// Row-wise work (a reduction over a row, then a write of the row) runs as one team per row on
// devices, so the threads of a team share the row's reductions and write coalesced; on host
// spaces it runs as a plain loop over rows with the row's loops sequential and vectorisable.
// Both paths execute the same row body, written once against the small `Row` interface below
// (for_each, sum, max, single).

#include <trident/core/half_precision.hpp>
#include <trident/ops/detail/fast_math.hpp>

#include <Kokkos_Core.hpp>

#include <cstdint>
#include <string>
#include <type_traits>

namespace trident {
namespace ops {
namespace detail {

template <class ExecutionSpace>
constexpr bool runs_on_host() {
  return std::is_same<typename ExecutionSpace::memory_space, Kokkos::HostSpace>::value;
}

template <class ExecutionSpace>
using IndexRange = Kokkos::RangePolicy<ExecutionSpace, Kokkos::IndexType<std::int64_t>>;

// Deterministic column reductions walk each column's rows in order, one work item per block of
// adjacent columns, so a column's result does not depend on how the columns are blocked.
//
// Layer-norm parameter gradients, whose per-element work is a multiply-add, take strips of 16
// columns on host spaces: their accumulators stay in a core's vector registers. On devices they
// are column sums in chunks of rows, as below.
constexpr int host_column_strip_width = 16;

// Bias gradients (accumulate_column_sums below, whose values may be a whole activation's
// derivative) and the embedding backward deal the columns out in one block per host thread,
// each a multiple of 16 wide (its row runs vectorise) and at most column_block_capacity (the
// accumulators a work item holds), so a row is read as one long run: a narrow block strides a
// page a row, which the prefetchers do not follow (the fused bias-GELU backward ran 2.4x slower
// at 256 columns than at the whole row, one thread). On devices the embedding backward's block
// is one column; accumulate_column_sums cuts the rows instead (below).
template <class ExecutionSpace>
constexpr int column_block_capacity() {
  return runs_on_host<ExecutionSpace>() ? 2048 : 1;
}

// The block width for `threads` threads sharing `cols` columns.
constexpr int column_block_width_for(std::int64_t threads, std::int64_t cols, int capacity) {
  if (capacity < 16) return capacity;  // a device's one column
  if (threads < 1) threads = 1;
  const std::int64_t share = ((cols + threads - 1) / threads + 15) / 16 * 16;
  return static_cast<int>(share < 16 ? 16 : share > capacity ? capacity : share);
}

template <class ExecutionSpace>
int column_block_width(const ExecutionSpace& space, std::int64_t cols) {
  return column_block_width_for(space.concurrency(), cols, column_block_capacity<ExecutionSpace>());
}

inline std::int64_t column_block_count(std::int64_t cols, int width) {
  return (cols + width - 1) / width;
}

// Column sums that do not depend on the thread count: sums(c) += the sum over the rows n, in
// order, of value(n, c), one accumulator per column (in float for 16-bit sums); value may also
// write what it computes (a gradient whose column sums are a bias gradient).
template <class SumsView, class Value, int Capacity>
struct ColumnBlockSums {
  using Scalar = compute_t<typename SumsView::non_const_value_type>;
  SumsView m_sums;
  Value m_value;
  std::int64_t m_rows, m_cols;
  int m_width;

  KOKKOS_FUNCTION void operator()(const std::int64_t block) const {
    const std::int64_t c0 = block * m_width;
    const int count = static_cast<int>(m_cols - c0 < m_width ? m_cols - c0 : m_width);
    Scalar acc[Capacity] = {};
    for (std::int64_t n = 0; n < m_rows; ++n)
      for (int j = 0; j < count; ++j) acc[j] += m_value(n, c0 + j);
    for (int j = 0; j < count; ++j) m_sums(c0 + j) = m_sums(c0 + j) + acc[j];
  }
};

// On devices a column's walk down all its rows would leave most of the device idle (a few
// thousand columns, each thousands of rows long): there the rows are cut into chunks of
// device_column_chunk_rows, one thread sums one chunk of one column (a warp reads adjacent
// columns of a row at once), and then one thread a column adds up its chunks in order. The
// order depends on the rows alone, so every run gives the same sums.
constexpr std::int64_t device_column_chunk_rows = 64;

template <class ChunksView, class Value>
struct ColumnChunkSums {
  ChunksView m_chunks;
  Value m_value;
  std::int64_t m_rows, m_cols, m_chunk_rows;

  KOKKOS_FUNCTION void operator()(const std::int64_t i) const {
    const std::int64_t chunk = i / m_cols, c = i % m_cols;
    const std::int64_t n0 = chunk * m_chunk_rows, n1 = n0 + m_chunk_rows < m_rows ? n0 + m_chunk_rows : m_rows;
    typename ChunksView::non_const_value_type acc = 0;
    for (std::int64_t n = n0; n < n1; ++n) acc += m_value(n, c);
    m_chunks(chunk, c) = acc;
  }
};

template <class SumsView, class ChunksView>
struct AddColumnChunks {
  SumsView m_sums;
  ChunksView m_chunks;

  KOKKOS_FUNCTION void operator()(const std::int64_t c) const {
    typename ChunksView::non_const_value_type acc = 0;
    for (std::int64_t k = 0; k < static_cast<std::int64_t>(m_chunks.extent(0)); ++k) acc += m_chunks(k, c);
    m_sums(c) = m_sums(c) + acc;
  }
};

// The devices' column sums, callable on any space (the tests run them on the host).
template <class ExecutionSpace, class SumsView, class Value>
void accumulate_column_sums_in_chunks(const ExecutionSpace& space, const std::string& label, const SumsView& sums,
                                      std::int64_t rows, std::int64_t cols, const Value& value) {
  if (rows <= 0 || cols <= 0) return;
  using Scalar = compute_t<typename SumsView::non_const_value_type>;
  using Chunks = Kokkos::View<Scalar**, Kokkos::LayoutRight, typename ExecutionSpace::memory_space>;
  const std::int64_t chunks = (rows + device_column_chunk_rows - 1) / device_column_chunk_rows;
  const Chunks partial(Kokkos::view_alloc(space, Kokkos::WithoutInitializing, label + "_chunks"), chunks, cols);
  Kokkos::parallel_for(label, IndexRange<ExecutionSpace>(space, 0, chunks * cols),
                       ColumnChunkSums<Chunks, Value>{partial, value, rows, cols, device_column_chunk_rows});
  Kokkos::parallel_for(label + "_total", IndexRange<ExecutionSpace>(space, 0, cols),
                       AddColumnChunks<SumsView, Chunks>{sums, partial});
}

template <class ExecutionSpace, class SumsView, class Value>
void accumulate_column_sums(const ExecutionSpace& space, const std::string& label, const SumsView& sums,
                            std::int64_t rows, std::int64_t cols, const Value& value) {
  if (rows <= 0 || cols <= 0) return;
  if constexpr (!runs_on_host<ExecutionSpace>()) {
    accumulate_column_sums_in_chunks(space, label, sums, rows, cols, value);
    return;
  }
  constexpr int capacity = column_block_capacity<ExecutionSpace>();
  const int width = column_block_width(space, cols);
  Kokkos::parallel_for(label, IndexRange<ExecutionSpace>(space, 0, column_block_count(cols, width)),
                       ColumnBlockSums<SumsView, Value, capacity>{sums, value, rows, cols, width});
}

// value(n, c) of accumulate_column_sums: the element of a rank-2 view.
template <class View>
struct ElementOf {
  View m_view;
  KOKKOS_FUNCTION compute_t<typename View::non_const_value_type> operator()(const std::int64_t n,
                                                                            const std::int64_t c) const {
    return m_view(n, c);
  }
};

template <class Body>
using body_value_t = std::decay_t<decltype(std::declval<const Body&>()(std::int64_t{}))>;

// What a row's sum or maximum of body(i) is kept in: float for 16-bit values (the device
// reducers have no 16-bit identities, and a 16-bit sum would lose the small terms).
template <class Body>
using row_value_t = compute_t<body_value_t<Body>>;

// The loops of one row, run by the calling thread alone. Sums keep 8 independent partial
// results (combined pairwise at the end) so the compiler can vectorise them without
// reassociating floating-point additions itself; a float maximum runs on order-preserving
// integer keys, which the compiler vectorises as it is.
struct SequentialRow {
  static constexpr int lanes = 8;

  template <class Body>
  KOKKOS_INLINE_FUNCTION void for_each(std::int64_t count, const Body& body) const {
    for (std::int64_t i = 0; i < count; ++i) body(i);
  }
  template <class Body>
  KOKKOS_INLINE_FUNCTION row_value_t<Body> sum(std::int64_t count, const Body& body) const {
    using Value = row_value_t<Body>;
    Value partial[lanes] = {};
    std::int64_t i = 0;
    for (; i + lanes <= count; i += lanes)
      for (int j = 0; j < lanes; ++j) partial[j] += body(i + j);
    for (int j = 0; i < count; ++i, ++j) partial[j] += body(i);
    return ((partial[0] + partial[1]) + (partial[2] + partial[3])) +
           ((partial[4] + partial[5]) + (partial[6] + partial[7]));
  }
  // The maximum of body(i) over [0, count); count must be positive.
  template <class Body>
  KOKKOS_INLINE_FUNCTION row_value_t<Body> max(std::int64_t count, const Body& body) const {
    using Value = row_value_t<Body>;
    if constexpr (std::is_same<Value, float>::value) {
      std::int32_t result = ordered_key(body(0));
      for (std::int64_t i = 1; i < count; ++i) {
        const std::int32_t key = ordered_key(body(i));
        result = key > result ? key : result;
      }
      return from_ordered_key(result);
    } else {
      Value result = static_cast<Value>(body(0));
      for (std::int64_t i = 1; i < count; ++i) {
        const Value value = body(i);
        result = value > result ? value : result;
      }
      return result;
    }
  }
  template <class Body>
  KOKKOS_INLINE_FUNCTION void single(const Body& body) const {
    body();
  }
};

// The loops of one row, shared by the threads of a team. Reductions return the same value on
// every thread; for_each ends with a barrier so later loops see what it wrote.
template <class Member>
struct TeamRow {
  const Member& m_team;

  template <class Body>
  KOKKOS_INLINE_FUNCTION void for_each(std::int64_t count, const Body& body) const {
    Kokkos::parallel_for(Kokkos::TeamThreadRange(m_team, count), body);
    m_team.team_barrier();
  }
  template <class Body>
  KOKKOS_INLINE_FUNCTION row_value_t<Body> sum(std::int64_t count, const Body& body) const {
    row_value_t<Body> total = 0;
    Kokkos::parallel_reduce(
        Kokkos::TeamThreadRange(m_team, count), [&](std::int64_t i, row_value_t<Body>& partial) { partial += body(i); },
        total);
    return total;
  }
  template <class Body>
  KOKKOS_INLINE_FUNCTION row_value_t<Body> max(std::int64_t count, const Body& body) const {
    using Value = row_value_t<Body>;
    Value result{};
    Kokkos::parallel_reduce(
        Kokkos::TeamThreadRange(m_team, count),
        [&](std::int64_t i, Value& partial) {
          const Value value = body(i);
          partial = value > partial ? value : partial;
        },
        Kokkos::Max<Value>(result));
    return result;
  }
  template <class Body>
  KOKKOS_INLINE_FUNCTION void single(const Body& body) const {
    Kokkos::single(Kokkos::PerTeam(m_team), body);
  }
};

template <class RowBody>
struct SequentialRows {
  RowBody m_body;
  KOKKOS_FUNCTION void operator()(const std::int64_t row) const { m_body(row, SequentialRow{}); }
};

template <class RowBody, class Member>
struct TeamRows {
  RowBody m_body;
  KOKKOS_FUNCTION void operator()(const Member& team) const {
    m_body(static_cast<std::int64_t>(team.league_rank()), TeamRow<Member>{team});
  }
};

// Runs body(row, Row) for every row in [0, rows); the body is a functor with a templated
// KOKKOS_FUNCTION operator()(std::int64_t row, const Row& loops) const.
template <class ExecutionSpace, class RowBody>
void for_each_row(const ExecutionSpace& space, const std::string& label, std::int64_t rows, const RowBody& body) {
  if (rows <= 0) return;
  if constexpr (runs_on_host<ExecutionSpace>()) {
    Kokkos::parallel_for(label, IndexRange<ExecutionSpace>(space, 0, rows), SequentialRows<RowBody>{body});
  } else {
    using Policy = Kokkos::TeamPolicy<ExecutionSpace>;
    Kokkos::parallel_for(label, Policy(space, static_cast<int>(rows), Kokkos::AUTO),
                         TeamRows<RowBody, typename Policy::member_type>{body});
  }
}

// The same rows on the calling host thread, for code already running on one thread of a
// parallel region (attention's heads): a nested launch would wait on the space instance the
// region holds.
template <class RowBody>
void for_each_row_on_this_thread(std::int64_t rows, const RowBody& body) {
  const SequentialRows<RowBody> each{body};
  for (std::int64_t row = 0; row < rows; ++row) each(row);
}

template <class ElementBody>
struct ElementsByRow {
  ElementBody m_body;
  std::int64_t m_cols;
  KOKKOS_FUNCTION void operator()(const std::int64_t row) const {
    for (std::int64_t col = 0; col < m_cols; ++col) m_body(row, col);
  }
};

template <class ElementBody>
struct ElementsFlat {
  ElementBody m_body;
  std::int64_t m_cols;
  KOKKOS_FUNCTION void operator()(const std::int64_t index) const { m_body(index / m_cols, index % m_cols); }
};

// Runs body(row, col) for every element of a [rows, cols] grid: rows in parallel with a
// vectorisable inner loop on host spaces, one thread per element on devices.
template <class ExecutionSpace, class ElementBody>
void for_each_element(const ExecutionSpace& space, const std::string& label, std::int64_t rows, std::int64_t cols,
                      const ElementBody& body) {
  if (rows <= 0 || cols <= 0) return;
  if constexpr (runs_on_host<ExecutionSpace>()) {
    Kokkos::parallel_for(label, IndexRange<ExecutionSpace>(space, 0, rows), ElementsByRow<ElementBody>{body, cols});
  } else {
    Kokkos::parallel_for(label, IndexRange<ExecutionSpace>(space, 0, rows * cols),
                         ElementsFlat<ElementBody>{body, cols});
  }
}

// For copies whose host loop is best written per row (contiguous runs, few index
// computations) and whose device loop is one thread per element: the functor provides
// operator()(RowTag, row) and operator()(ElementTag, index) with index in [0, rows * cols).
struct RowTag {};
struct ElementTag {};

template <class ExecutionSpace, class Functor>
void for_each_row_or_element(const ExecutionSpace& space, const std::string& label, std::int64_t rows,
                             std::int64_t cols, const Functor& functor) {
  if (rows <= 0 || cols <= 0) return;
  if constexpr (runs_on_host<ExecutionSpace>()) {
    Kokkos::parallel_for(
        label, Kokkos::RangePolicy<ExecutionSpace, RowTag, Kokkos::IndexType<std::int64_t>>(space, 0, rows), functor);
  } else {
    Kokkos::parallel_for(
        label, Kokkos::RangePolicy<ExecutionSpace, ElementTag, Kokkos::IndexType<std::int64_t>>(space, 0, rows * cols),
        functor);
  }
}

}  // namespace detail
}  // namespace ops
}  // namespace trident
