#pragma once
// Global-norm gradient clipping with torch.nn.utils.clip_grad_norm_ semantics:
// coef = max_norm / (total_norm + 1e-6), applied only when coef < 1.

#include <trident/core/error.hpp>
#include <trident/core/profiling.hpp>
#include <trident/ops/detail/launch.hpp>

#include <Kokkos_Core.hpp>

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

namespace trident::optim {

namespace detail {

// One chunk of the ranges per row: its squares summed in double (eight partial sums on host
// spaces, the team on devices), written to its own entry.
template <class View, class Chunks, class Sums>
struct ChunkSumsOfSquares {
  View m_view;
  Chunks m_chunks;  // [chunk][begin, end)
  Sums m_sums;
  template <class Row>
  KOKKOS_FUNCTION void operator()(const std::int64_t chunk, const Row& loops) const {
    const std::int64_t begin = m_chunks(chunk, 0);
    const double sum = loops.sum(m_chunks(chunk, 1) - begin, [&](const std::int64_t i) {
      const double x = static_cast<double>(m_view(begin + i));
      return x * x;
    });
    loops.single([&]() { m_sums(chunk) = sum; });
  }
};

// Elements a chunk sums: enough work per team, few partial sums to copy back.
inline constexpr std::int64_t sum_of_squares_chunk = 16384;

template <class View>
struct ScaleInPlace {
  View m_view;
  typename View::non_const_value_type m_factor;
  KOKKOS_FUNCTION void operator()(const std::int64_t i) const { m_view(i) *= m_factor; }
};

}  // namespace detail

// The sum of squares of a rank-1 view over the element ranges [begin, end) given (all of it
// when none are given), accumulated in double, in one pass: the ranges are cut into chunks,
// each chunk summed by one work item, the chunks' sums added in order on the host, so the
// value does not depend on the thread count or the run.
template <class ExecutionSpace, class View>
double sum_of_squares(const ExecutionSpace& space, const View& view,
                      std::vector<std::pair<std::int64_t, std::int64_t>> ranges = {}) {
  using memory_space = typename ExecutionSpace::memory_space;
  ScopedRegion region("trident::optim::sum_of_squares");
  const auto length = static_cast<std::int64_t>(view.extent(0));
  if (ranges.empty()) ranges.emplace_back(0, length);
  std::vector<std::pair<std::int64_t, std::int64_t>> cut;
  for (const auto& [begin, end] : ranges) {
    require_argument(0 <= begin && begin <= end && end <= length, "trident::optim::sum_of_squares: the range [", begin,
                     ", ", end, ") is not inside the view's ", length, " elements");
    for (std::int64_t b = begin; b < end; b += detail::sum_of_squares_chunk)
      cut.emplace_back(b, std::min(end, b + detail::sum_of_squares_chunk));
  }
  if (cut.empty()) return 0;
  const auto count = static_cast<std::int64_t>(cut.size());
  Kokkos::View<std::int64_t* [2], Kokkos::LayoutRight, Kokkos::HostSpace> host_chunks(
      "trident::optim::sum_of_squares::chunks", count);
  for (std::int64_t c = 0; c < count; ++c) {
    host_chunks(c, 0) = cut[static_cast<std::size_t>(c)].first;
    host_chunks(c, 1) = cut[static_cast<std::size_t>(c)].second;
  }
  const auto chunks = Kokkos::create_mirror_view_and_copy(memory_space(), host_chunks);
  Kokkos::View<double*, memory_space> sums("trident::optim::sum_of_squares::sums", count);
  ops::detail::for_each_row(space, "trident::optim::sum_of_squares", count,
                            detail::ChunkSumsOfSquares<View, decltype(chunks), decltype(sums)>{view, chunks, sums});
  const auto host_sums = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), sums);
  double total = 0;
  for (std::int64_t c = 0; c < count; ++c) total += host_sums(c);
  return total;
}

template <class ExecutionSpace, class View>
void scale_in_place(const ExecutionSpace& space, const View& view, double factor) {
  Kokkos::parallel_for("trident::optim::scale",
                       Kokkos::RangePolicy<ExecutionSpace, Kokkos::IndexType<std::int64_t>>(
                           space, 0, static_cast<std::int64_t>(view.extent(0))),
                       detail::ScaleInPlace<View>{view, static_cast<typename View::non_const_value_type>(factor)});
}

// The factor clip_grad_norm_ multiplies the gradients by (1 when no clipping is needed).
inline double clip_coefficient(double total_norm, double max_norm) {
  require_argument(max_norm > 0, "trident::optim::clip_coefficient: max_norm must be positive, got ", max_norm);
  const double coef = max_norm / (total_norm + 1e-6);
  return coef < 1.0 ? coef : 1.0;
}

}  // namespace trident::optim
