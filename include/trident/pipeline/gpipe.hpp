#pragma once
// GPipe (Huang et al. 2019): every rank runs the forwards of all m micro-batches, then all
// the backwards. Simple, and its bubble is that of 1F1B, but each rank keeps the
// activations of all m micro-batches alive at once.

#include <trident/pipeline/communication.hpp>
#include <trident/pipeline/schedule.hpp>

#include <cstddef>

namespace trident::pipeline {

inline Schedule gpipe(int ranks, int micro_batches) {
  require_schedule_shape("trident::pipeline::gpipe", ranks, micro_batches, 1);
  Schedule schedule{"gpipe", ranks, micro_batches, 1, {}};
  schedule.actions.resize(static_cast<std::size_t>(ranks));
  for (auto& list : schedule.actions) {
    for (int i = 0; i < micro_batches; ++i) list.push_back(compute(ActionType::forward, i));
    for (int i = 0; i < micro_batches; ++i) list.push_back(compute(ActionType::backward, i));
  }
  return with_communication(schedule);
}

}  // namespace trident::pipeline
