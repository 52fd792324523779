#pragma once
// A timeline of what data parallelism did during a step (hooks reached, collectives posted
// and completed) and the time ranks spent blocked on communication. Tests read the order of
// events to prove that reductions start while backward is still running; benchmarks read the
// blocked time to measure how much communication overlap hides.

#include <chrono>
#include <cstdint>
#include <vector>

namespace trident::data_parallel {

enum class EventKind {
  backward_done,       // a unit's after_backward hook: its gradients are final
  reduction_started,   // a gradient bucket (stages 0-2) or unit (stage 3) posted for reduction
  reduction_finished,  // ... and complete
  gather_started,      // ZeRO-3: a unit's parameters posted for all-gather
  gather_finished      // ... and in place for its compute
};

inline const char* event_kind_name(EventKind kind) {
  switch (kind) {
    case EventKind::backward_done:
      return "backward_done";
    case EventKind::reduction_started:
      return "reduction_started";
    case EventKind::reduction_finished:
      return "reduction_finished";
    case EventKind::gather_started:
      return "gather_started";
    case EventKind::gather_finished:
      return "gather_finished";
  }
  return "unknown";
}

struct Event {
  EventKind kind;
  int index;        // the unit, or the bucket for stages 0-2 reductions
  int micro_batch;  // within the step, from 0
  double seconds;   // since the step began
};

struct CommunicationTimes {
  // Blocked waiting for gradient reductions and ZeRO-3 parameter gathers: the part of that
  // communication that compute did not hide.
  double blocked_seconds = 0;
  // Blocking collectives outside backward: ZeRO-1/2's parameter all-gather, loss and norm.
  double collective_seconds = 0;
};

class EventLog {
 public:
  using clock = std::chrono::steady_clock;

  explicit EventLog(bool enabled = false) : m_enabled(enabled) {}
  bool enabled() const { return m_enabled; }

  void begin_step() {
    m_events.clear();
    m_times = {};
    m_micro_batch = -1;
    m_start = clock::now();
  }
  void begin_micro_batch() { ++m_micro_batch; }
  int micro_batch() const { return m_micro_batch; }

  void record(EventKind kind, int index) {
    if (m_enabled) m_events.push_back({kind, index, m_micro_batch, seconds_since(m_start)});
  }
  const std::vector<Event>& events() const { return m_events; }

  CommunicationTimes& times() { return m_times; }
  const CommunicationTimes& times() const { return m_times; }

  static double seconds_since(clock::time_point start) {
    return std::chrono::duration<double>(clock::now() - start).count();
  }

 private:
  bool m_enabled;
  int m_micro_batch = -1;
  clock::time_point m_start = clock::now();
  std::vector<Event> m_events;
  CommunicationTimes m_times;
};

}  // namespace trident::data_parallel
