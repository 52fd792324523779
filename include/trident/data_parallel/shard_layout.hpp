#pragma once
// Which contiguous range of the flat parameter buffer each rank of a data-parallel group
// owns under ZeRO: [begin(r), end(r)), in rank order, covering [0, total). When total is not
// divisible by the number of ranks, the first total % ranks ranks hold one element more.

#include <trident/core/error.hpp>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <utility>
#include <vector>

namespace trident::data_parallel {

class ShardLayout {
 public:
  ShardLayout() = default;
  ShardLayout(std::int64_t total, int ranks) : m_total(total), m_ranks(ranks) {
    require_argument(total >= 0 && ranks >= 1, "trident::data_parallel::ShardLayout: ", total, " elements over ", ranks,
                     " ranks");
    require_argument(total <= INT_MAX, "trident::data_parallel::ShardLayout: ", total,
                     " elements are more than an MPI count can hold (", INT_MAX, ")");
  }

  std::int64_t total() const { return m_total; }
  int ranks() const { return m_ranks; }
  std::int64_t begin(int rank) const {
    const std::int64_t base = m_total / m_ranks, extra = m_total % m_ranks;
    return rank * base + std::min<std::int64_t>(rank, extra);
  }
  std::int64_t end(int rank) const { return begin(rank + 1); }
  std::int64_t size(int rank) const { return end(rank) - begin(rank); }

  // The part of [first, last) that `rank` owns; when none, the empty range at begin(rank).
  std::pair<std::int64_t, std::int64_t> part(int rank, std::int64_t first, std::int64_t last) const {
    const std::int64_t lo = std::max(first, begin(rank)), hi = std::min(last, end(rank));
    return lo < hi ? std::make_pair(lo, hi) : std::make_pair(begin(rank), begin(rank));
  }

  // How many elements of [first, last) each rank owns, in rank order: the counts of a
  // reduce-scatter or all-gather of that range, since the parts concatenate to the range.
  std::vector<int> counts_within(std::int64_t first, std::int64_t last) const {
    std::vector<int> counts;
    for (int r = 0; r < m_ranks; ++r) {
      const auto p = part(r, first, last);
      counts.push_back(static_cast<int>(p.second - p.first));
    }
    return counts;
  }

 private:
  std::int64_t m_total = 0;
  int m_ranks = 1;
};

}  // namespace trident::data_parallel
