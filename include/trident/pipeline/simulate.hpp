#pragma once
// Runs a schedule on a model of the machine to predict its timeline: every rank executes
// its list in order, a pass starts when the previous action of its rank has finished, a
// send is posted at once and its data arrives cost_comm later, a receive finishes when the
// data has arrived. The result gives each action's start and end, the step's makespan and
// each rank's busy time and bubble fraction (idle / makespan, see bubble.hpp). The schedule
// is validated first; an invalid one throws trident::Error.

#include <trident/core/error.hpp>
#include <trident/pipeline/action.hpp>
#include <trident/pipeline/schedule.hpp>
#include <trident/pipeline/trace.hpp>
#include <trident/pipeline/validate.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <functional>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

namespace trident::pipeline {

struct TimedAction {
  Action action;
  double start = 0;
  double end = 0;  // a receive's end is when its data arrived; a send takes no time
};

struct Simulation {
  std::vector<std::vector<TimedAction>> timeline;  // [rank], every action in list order
  double makespan = 0;                             // from 0 to the last action's end on any rank
  std::vector<double> busy;                        // [rank], time spent in compute passes
  std::vector<double> bubble;                      // [rank], (makespan - busy) / makespan

  // The mean over the ranks: total idle time / (p * makespan), one rounding from exact costs.
  double bubble_fraction() const {
    const double total = makespan * static_cast<double>(busy.size());
    return total > 0 ? (total - std::accumulate(busy.begin(), busy.end(), 0.0)) / total : 0.0;
  }
};

// The time of one compute pass of a rank, e.g. from the stage costs of a partition.
using PassCost = std::function<double(int rank, const Action& pass)>;

namespace detail {
inline constexpr double not_yet = std::numeric_limits<double>::infinity();

// For a replay of `schedule` with transfers of `cost_comm`: every message's arrival, by
// message_key, none sent yet. Validates the schedule first: a valid one cannot stall, so the
// replay always finishes.
inline std::vector<double> unsent_messages(const Schedule& schedule, double cost_comm) {
  require_argument(std::isfinite(cost_comm) && cost_comm >= 0,
                   "trident::pipeline::simulate: the transfer time must be finite and >= 0, got ", cost_comm);
  validate(schedule);
  const std::size_t keys =
      2 * static_cast<std::size_t>(schedule.micro_batches) * static_cast<std::size_t>(schedule.stages());
  return std::vector<double>(keys, not_yet);
}
}  // namespace detail

inline Simulation simulate(const Schedule& schedule, const PassCost& pass_cost, double cost_comm = 0) {
  std::vector<double> arrival = detail::unsent_messages(schedule, cost_comm);
  const Schedule& s = schedule;
  const std::size_t ranks = static_cast<std::size_t>(s.ranks);
  const double not_yet = detail::not_yet;
  std::vector<double> clock(ranks, 0.0);
  std::vector<std::size_t> next(ranks, 0);
  Simulation result;
  result.timeline.resize(ranks);
  result.busy.assign(ranks, 0.0);
  for (bool progress = true; progress;) {
    progress = false;
    for (int rank = 0; rank < s.ranks; ++rank) {
      const auto r = static_cast<std::size_t>(rank);
      const auto& list = s.actions_of(rank);
      for (; next[r] < list.size(); ++next[r]) {
        const Action& a = list[next[r]];
        TimedAction timed{a, clock[r], clock[r]};
        if (is_compute(a.type)) {
          const double cost = pass_cost(rank, a);
          require_argument(std::isfinite(cost) && cost >= 0, "trident::pipeline::simulate: the time of ",
                           to_string(a.type), " of micro-batch ", a.micro_batch, " on rank ", rank,
                           " must be finite and >= 0, got ", cost);
          timed.end += cost;
          result.busy[r] += cost;
        } else if (is_send(a.type)) {
          arrival[detail::message_key(s, rank, a)] = clock[r] + cost_comm;
        } else {
          const double arrives = arrival[detail::message_key(s, rank, a)];
          if (arrives == not_yet) break;  // its send has not been posted yet
          timed.end = std::max(clock[r], arrives);
        }
        clock[r] = timed.end;
        result.timeline[r].push_back(timed);
        progress = true;
      }
    }
  }
  result.makespan = *std::max_element(clock.begin(), clock.end());
  for (std::size_t r = 0; r < ranks; ++r) {
    result.bubble.push_back(result.makespan > 0 ? (result.makespan - result.busy[r]) / result.makespan : 0.0);
  }
  return result;
}

// Same-cost passes on every stage; a full backward costs cost_backward_input + cost_backward_weight.
inline Simulation simulate(const Schedule& schedule, double cost_forward, double cost_backward_input,
                           double cost_backward_weight, double cost_comm = 0) {
  const PassCost cost = [=](int, const Action& pass) {
    switch (pass.type) {
      case ActionType::forward:
        return cost_forward;
      case ActionType::backward:
        return cost_backward_input + cost_backward_weight;
      case ActionType::backward_input:
        return cost_backward_input;
      default:
        return cost_backward_weight;
    }
  };
  return simulate(schedule, cost, cost_comm);
}

// The simulated timeline as trace events, time_unit_us microseconds per unit of cost:
// the compute passes, and with with_communication the waits of receives that waited.
inline std::vector<TraceEvent> trace_events(const Schedule& schedule, const Simulation& simulation,
                                            double time_unit_us = 1.0, bool with_communication = false) {
  std::vector<TraceEvent> events;
  for (std::size_t r = 0; r < simulation.timeline.size(); ++r) {
    for (const TimedAction& t : simulation.timeline[r]) {
      const bool waited_receive = is_recv(t.action.type) && t.end > t.start;
      if (!is_compute(t.action.type) && !(with_communication && waited_receive)) continue;
      events.push_back(TraceEvent{to_string(t.action, schedule.chunks > 1), static_cast<int>(r), t.start * time_unit_us,
                                  t.end * time_unit_us, to_string(t.action.type)});
    }
  }
  return events;
}

}  // namespace trident::pipeline
