#pragma once
// Per-rank element counts of the uneven collectives (allgatherv, reduce_scatter_v), checked
// once and turned into the int arrays MPI wants.

#include <trident/comm/communicator.hpp>
#include <trident/core/error.hpp>

#include <climits>
#include <cstdint>
#include <vector>

namespace trident {
namespace comm {
namespace Impl {

struct BlockCounts {
  std::vector<int> counts;         // elements of rank r's block
  std::vector<int> displacements;  // where rank r's block starts in the concatenation
  std::int64_t total = 0;
};

// `total` elements in `parts` consecutive blocks, the first total % parts one longer.
inline std::vector<int> even_blocks(std::int64_t total, int parts) {
  std::vector<int> counts(static_cast<std::size_t>(parts));
  for (int p = 0; p < parts; ++p)
    counts[static_cast<std::size_t>(p)] = static_cast<int>(total / parts + (p < total % parts));
  return counts;
}

inline BlockCounts make_block_counts(const char* operation, const Communicator& comm, const std::vector<int>& counts) {
  require_argument(static_cast<int>(counts.size()) == comm.size(), operation, " on communicator '", comm.name(),
                   "': counts has ", counts.size(), " entries but the communicator has ", comm.size(), " ranks");
  BlockCounts blocks;
  blocks.counts = counts;
  blocks.displacements.reserve(counts.size());
  for (std::size_t r = 0; r < counts.size(); ++r) {
    require_argument(counts[r] >= 0, operation, ": counts[", r, "] is ", counts[r], ", a count cannot be negative");
    blocks.displacements.push_back(static_cast<int>(blocks.total));
    blocks.total += counts[r];
    require_argument(blocks.total <= INT_MAX, operation, ": the counts add up to more than an MPI count can hold (",
                     INT_MAX, ")");
  }
  return blocks;
}

}  // namespace Impl
}  // namespace comm
}  // namespace trident
