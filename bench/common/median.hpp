#pragma once
// The middle of a benchmark's repeated times (the upper of the two middle ones for an even
// count): one slow repetition, a page fault or a descheduled rank, does not move it.

#include <algorithm>
#include <vector>

namespace trident_bench {

inline double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

}  // namespace trident_bench
