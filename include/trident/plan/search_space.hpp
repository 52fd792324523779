#pragma once
// What the planner's search may choose from (plan/search.hpp): a small header of its own, so
// that a Trainer's settings name it without the planner.

#include <trident/mesh/mesh_layout.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace trident::plan {

struct SearchSpace {
  std::vector<std::string> schedules = {"1f1b", "gpipe", "interleaved", "zb"};
  int max_virtual_stages = 4;
  std::vector<int> zero_stages = {0, 1, 2, 3};
  bool try_recompute = true;
  bool try_sequence_parallel = true;
  int max_tp = 0;                    // 0: the devices of a node
  std::int64_t max_micro_batch = 0;  // 0: any
  int replay = 24;                   // candidates replayed through their schedule
  // How the trainer will arrange the ranks: which ranks share cores depends on it.
  MeshOrder mesh_order = default_mesh_order;
};

}  // namespace trident::plan
