#pragma once
// Timelines as Chrome trace JSON ("X" complete events, times in microseconds), which
// Perfetto (ui.perfetto.dev) and chrome://tracing open directly. Each rank is a process
// named "rank <r>" with one thread, so the ranks stack as rows in rank order.

#include <trident/core/error.hpp>
#include <trident/io/atomic_file.hpp>

#include <nlohmann/json.hpp>

#include <set>
#include <string>
#include <vector>

namespace trident::pipeline {

struct TraceEvent {
  std::string name;  // e.g. "F3": what the box says
  int rank;          // the row
  double start_us;
  double end_us;
  std::string category;  // e.g. "forward", "backward_weight", "recv_forward": its colour
};

inline nlohmann::json chrome_trace(const std::vector<TraceEvent>& events) {
  nlohmann::json list = nlohmann::json::array();
  std::set<int> ranks;
  for (const TraceEvent& e : events) {
    require_argument(e.end_us >= e.start_us, "trident::pipeline::chrome_trace: event '", e.name, "' on rank ", e.rank,
                     " ends at ", e.end_us, " us, before it starts at ", e.start_us, " us");
    ranks.insert(e.rank);
    list.push_back({{"name", e.name},
                    {"cat", e.category},
                    {"ph", "X"},
                    {"ts", e.start_us},
                    {"dur", e.end_us - e.start_us},
                    {"pid", e.rank},
                    {"tid", 0}});
  }
  for (int rank : ranks) {
    const std::string label = "rank " + std::to_string(rank);
    list.push_back({{"name", "process_name"}, {"ph", "M"}, {"pid", rank}, {"tid", 0}, {"args", {{"name", label}}}});
    list.push_back(
        {{"name", "process_sort_index"}, {"ph", "M"}, {"pid", rank}, {"tid", 0}, {"args", {{"sort_index", rank}}}});
  }
  return {{"traceEvents", std::move(list)}, {"displayTimeUnit", "ms"}};
}

// Readers see the previous file or the complete new one, never a partial trace.
inline void write_chrome_trace(const std::string& path, const std::vector<TraceEvent>& events) {
  const std::string text = chrome_trace(events).dump(1);
  io::AtomicFileWriter file(path, "trident::pipeline::write_chrome_trace");
  file.write(text.data(), text.size());
  file.commit();
}

}  // namespace trident::pipeline
