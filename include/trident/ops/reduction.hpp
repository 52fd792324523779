#pragma once
// sum and mean of a rank-1 or rank-2 view, in double, for losses and diagnostics.
//
// The order of the additions is fixed (blocks of consecutive elements, or rows, each summed in
// order, then the block sums in order), so the result is bitwise the same for any thread count
// and on every backend.

#include <trident/core/profiling.hpp>
#include <trident/ops/detail/checks.hpp>
#include <trident/ops/detail/launch.hpp>

#include <Kokkos_Core.hpp>

#include <cstdint>

namespace trident {
namespace ops {
namespace detail {

constexpr std::int64_t sum_block_length = 1024;

template <class PartialView, class View, int Rank = static_cast<int>(View::rank)>
struct BlockSums;

template <class PartialView, class View>
struct BlockSums<PartialView, View, 1> {
  PartialView m_partials;
  View m_view;
  std::int64_t m_length;
  KOKKOS_FUNCTION void operator()(const std::int64_t block) const {
    const std::int64_t begin = block * sum_block_length;
    const std::int64_t end = begin + sum_block_length < m_length ? begin + sum_block_length : m_length;
    double total = 0;
    for (std::int64_t i = begin; i < end; ++i) total += static_cast<double>(m_view(i));
    m_partials(block) = total;
  }
};

template <class PartialView, class View>
struct BlockSums<PartialView, View, 2> {  // one block per row
  PartialView m_partials;
  View m_view;
  std::int64_t m_cols;
  KOKKOS_FUNCTION void operator()(const std::int64_t row) const {
    double total = 0;
    for (std::int64_t j = 0; j < m_cols; ++j) total += static_cast<double>(m_view(row, j));
    m_partials(row) = total;
  }
};

template <class TotalView, class PartialView>
struct SumInOrder {
  TotalView m_total;
  PartialView m_partials;
  std::int64_t m_count;
  KOKKOS_FUNCTION void operator()(const std::int64_t) const {
    double total = 0;
    for (std::int64_t i = 0; i < m_count; ++i) total += m_partials(i);
    m_total() = total;
  }
};

}  // namespace detail

// The sum of all elements of a rank-1 or rank-2 view, accumulated in double.
template <class ExecutionSpace, class View>
double sum(const ExecutionSpace& space, const View& view) {
  detail::assert_accessible<ExecutionSpace, View>();
  constexpr int rank = static_cast<int>(View::rank);
  static_assert(rank == 1 || rank == 2, "trident::ops::sum takes rank-1 or rank-2 views");
  ScopedRegion region("trident::ops::sum");
  if (view.size() == 0) return 0.0;
  using Memory = typename View::memory_space;
  const std::int64_t blocks = rank == 1
                                  ? (detail::extent(view, 0) + detail::sum_block_length - 1) / detail::sum_block_length
                                  : detail::extent(view, 0);
  Kokkos::View<double*, Kokkos::LayoutRight, Memory> partials(
      Kokkos::view_alloc(Kokkos::WithoutInitializing, "trident::ops::sum::partials"), blocks);
  using Partials = decltype(partials);
  const std::int64_t length_or_cols = detail::extent(view, rank == 1 ? 0 : rank - 1);
  Kokkos::parallel_for("trident::ops::sum_blocks", detail::IndexRange<ExecutionSpace>(space, 0, blocks),
                       detail::BlockSums<Partials, View>{partials, view, length_or_cols});
  Kokkos::View<double, Kokkos::LayoutRight, Memory> total("trident::ops::sum::total");
  Kokkos::parallel_for("trident::ops::sum_partials", detail::IndexRange<ExecutionSpace>(space, 0, 1),
                       detail::SumInOrder<decltype(total), Partials>{total, partials, blocks});
  auto host_total = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), total);
  return host_total();
}

// The mean of all elements of a rank-1 or rank-2 view (0 for an empty view).
template <class ExecutionSpace, class View>
double mean(const ExecutionSpace& space, const View& view) {
  ScopedRegion region("trident::ops::mean");
  if (view.size() == 0) return 0.0;
  return sum(space, view) / static_cast<double>(view.size());
}

}  // namespace ops
}  // namespace trident
