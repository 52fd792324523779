#pragma once
// The bubble of a step as it ran, from an executor's trace of all ranks: per rank the share of
// the step in which it computed nothing, idle / (idle + busy) with the step's makespan as
// idle + busy (bubble.hpp's definition, so it compares with the analytic fractions). Waits
// for data and transfers count as idle. Oversubscribed ranks (more ranks than cores) also
// wait for a core, which the trace shows as longer passes rather than as idle time.

#include <trident/core/error.hpp>
#include <trident/pipeline/action.hpp>
#include <trident/pipeline/trace.hpp>

#include <algorithm>
#include <cstddef>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

namespace trident::pipeline {

struct MeasuredBubble {
  double makespan_us = 0;       // first event's start to last event's end, over all ranks
  std::vector<double> busy_us;  // [rank] time in compute passes
  std::vector<double> bubble;   // [rank] 1 - busy / makespan

  double mean() const {
    return bubble.empty() ? 0.0
                          : std::accumulate(bubble.begin(), bubble.end(), 0.0) / static_cast<double>(bubble.size());
  }
};

inline bool is_compute_category(const std::string& category) {
  return category == to_string(ActionType::forward) || category == to_string(ActionType::backward) ||
         category == to_string(ActionType::backward_input) || category == to_string(ActionType::backward_weight);
}

inline MeasuredBubble measure_bubble(const std::vector<TraceEvent>& events, int ranks) {
  require_argument(ranks >= 1, "trident::pipeline::measure_bubble: ranks must be >= 1, got ", ranks);
  MeasuredBubble result;
  result.busy_us.assign(static_cast<std::size_t>(ranks), 0.0);
  double first = std::numeric_limits<double>::infinity(), last = -first;
  for (const TraceEvent& e : events) {
    require_argument(e.rank >= 0 && e.rank < ranks, "trident::pipeline::measure_bubble: event '", e.name, "' on rank ",
                     e.rank, " outside [0, ", ranks, ")");
    first = std::min(first, e.start_us);
    last = std::max(last, e.end_us);
    if (is_compute_category(e.category)) result.busy_us[static_cast<std::size_t>(e.rank)] += e.end_us - e.start_us;
  }
  result.makespan_us = events.empty() ? 0.0 : last - first;
  for (double busy : result.busy_us)
    result.bubble.push_back(result.makespan_us > 0 ? 1.0 - busy / result.makespan_us : 0.0);
  return result;
}

}  // namespace trident::pipeline
