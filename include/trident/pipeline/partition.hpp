#pragma once
// Cuts a model — embedding, L transformer blocks, final norm + head — into contiguous
// pipeline stages. The embedding always runs on the first stage and the norm + head on the
// last; every stage holds at least one block, so L >= the number of stages. Blocks are
// never dropped: when L is not a multiple of the stage count, some stages hold one more.
//
// With interleaving (v chunks per rank) the model has p * v stages; stage s runs on rank
// s mod p (see action.hpp).

#include <trident/core/error.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstddef>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

namespace trident::pipeline {

struct StageBlocks {
  int first_block = 0;  // the stage runs blocks [first_block, end_block)
  int end_block = 0;
  bool holds_embedding = false;  // the first stage
  bool holds_head = false;       // the last stage: final norm, tied head and loss
  int blocks() const { return end_block - first_block; }
};

struct Partition {
  std::vector<StageBlocks> stages;
  std::vector<double> stage_costs;  // its blocks, plus the embedding or head it holds
  double max_stage_cost() const {
    return stage_costs.empty() ? 0.0 : *std::max_element(stage_costs.begin(), stage_costs.end());
  }
};

namespace detail {

inline void require_cost(const char* what, double cost, int index = -1) {
  require_argument(std::isfinite(cost) && cost >= 0, "trident::pipeline::partition_stages: ", what,
                   index >= 0 ? " " + std::to_string(index) : std::string(), " costs ", cost,
                   "; costs must be finite and >= 0");
}

inline void require_enough_blocks(const char* operation, int layers, int stages) {
  require_argument(stages >= 1, operation, ": the number of stages must be at least 1, got ", stages);
  require_argument(layers >= stages, operation, ": L = ", layers, " blocks cannot fill ", stages,
                   " stages; every stage needs at least one transformer block");
}

// Stage costs of the given cut, summing each stage's blocks in order.
inline std::vector<double> stage_costs(const std::vector<StageBlocks>& stages, const std::vector<double>& block_costs,
                                       double embedding_cost, double head_cost) {
  std::vector<double> costs;
  for (const StageBlocks& stage : stages) {
    double cost = std::accumulate(block_costs.begin() + stage.first_block, block_costs.begin() + stage.end_block, 0.0);
    if (stage.holds_embedding) cost += embedding_cost;
    if (stage.holds_head) cost += head_cost;
    costs.push_back(cost);
  }
  return costs;
}

// Stage k of n running blocks [first, end): bounds and embedding/head flags.
inline StageBlocks stage_blocks(int k, int n, int first, int end) {
  return {first, end, k == 0, k == n - 1};
}

}  // namespace detail

// The cut that minimises the largest stage cost (exactly, by dynamic programming over the
// cut points, O(stages * L^2)). Among the cuts that reach that optimum it takes the most
// even one (least sum of squared stage costs), and among those the one whose earlier stages
// hold more blocks: L = 7 unit blocks on 3 stages give 3, 2, 2.
inline Partition partition_stages(const std::vector<double>& block_costs, int stages, double embedding_cost = 0,
                                  double head_cost = 0) {
  const int layers = static_cast<int>(block_costs.size());
  detail::require_enough_blocks("trident::pipeline::partition_stages", layers, stages);
  for (int b = 0; b < layers; ++b) detail::require_cost("block", block_costs[static_cast<std::size_t>(b)], b);
  detail::require_cost("the embedding", embedding_cost);
  detail::require_cost("the final norm + head", head_cost);

  std::vector<double> prefix(static_cast<std::size_t>(layers) + 1, 0.0);
  std::partial_sum(block_costs.begin(), block_costs.end(), prefix.begin() + 1);
  const auto cost = [&](int k, int first, int end) {
    return prefix[static_cast<std::size_t>(end)] - prefix[static_cast<std::size_t>(first)] +
           (k == 0 ? embedding_cost : 0.0) + (k == stages - 1 ? head_cost : 0.0);
  };
  const double infinity = std::numeric_limits<double>::infinity();
  const auto n = static_cast<std::size_t>(stages), count = static_cast<std::size_t>(layers);
  const auto at = [count](std::size_t k, std::size_t j) { return k * (count + 1) + j; };

  // 1. fewest_max[k][j]: the least possible largest cost of stages k.. over blocks [j, L).
  std::vector<double> fewest_max((n + 1) * (count + 1), infinity);
  fewest_max[at(n, count)] = 0.0;
  for (int k = stages - 1; k >= 0; --k) {
    const int blocks_after = stages - 1 - k;  // the later stages need one block each
    for (int first = k; first + 1 + blocks_after <= layers; ++first) {
      double best = infinity;
      for (int end = first + 1; end + blocks_after <= layers; ++end) {
        best = std::min(best, std::max(cost(k, first, end), fewest_max[at(k + 1, end)]));
      }
      fewest_max[at(k, first)] = best;
    }
  }
  const double optimum = fewest_max[at(0, 0)];
  const double slack = 1e-12 * std::max(1.0, optimum);  // sums taken in another order may round differently

  // 2. squares[k][j]: the least sum of squared costs of stages k.. over [j, L), each <= optimum.
  std::vector<double> squares((n + 1) * (count + 1), infinity);
  squares[at(n, count)] = 0.0;
  for (int k = stages - 1; k >= 0; --k) {
    const int blocks_after = stages - 1 - k;
    for (int first = k; first + 1 + blocks_after <= layers; ++first) {
      double best = infinity;
      for (int end = first + 1; end + blocks_after <= layers; ++end) {
        const double c = cost(k, first, end);
        if (c <= optimum + slack) best = std::min(best, c * c + squares[at(k + 1, end)]);
      }
      squares[at(k, first)] = best;
    }
  }

  // 3. Walk forward, giving each stage the most blocks that keep both optima.
  Partition partition;
  int first = 0;
  for (int k = 0; k < stages; ++k) {
    const int blocks_after = stages - 1 - k;
    const double target = squares[at(static_cast<std::size_t>(k), static_cast<std::size_t>(first))];
    const double square_slack = 1e-12 * std::max(1.0, target);
    int chosen = -1;
    for (int end = layers - blocks_after; end > first && chosen < 0; --end) {
      const double c = cost(k, first, end);
      if (c <= optimum + slack && c * c + squares[at(k + 1, end)] <= target + square_slack) chosen = end;
    }
    require(chosen > first, "trident::pipeline::partition_stages: no cut found for stage ", k, " (internal error)");
    partition.stages.push_back(detail::stage_blocks(k, stages, first, chosen));
    first = chosen;
  }
  partition.stage_costs = detail::stage_costs(partition.stages, block_costs, embedding_cost, head_cost);
  return partition;
}

// An explicit cut, "3,2,2": the number of blocks of each stage, first to last. The entries
// must be `stages` whole numbers >= 1 that add up to L.
inline std::vector<StageBlocks> parse_stage_layers(const std::string& spec, int layers, int stages) {
  const char* operation = "trident::pipeline::parse_stage_layers";
  detail::require_enough_blocks(operation, layers, stages);
  std::vector<int> counts;
  std::size_t start = 0;
  while (true) {
    const std::size_t comma = spec.find(',', start);
    const std::string raw = spec.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    const auto begin = raw.find_first_not_of(" \t"), end = raw.find_last_not_of(" \t");
    const std::string entry = begin == std::string::npos ? std::string() : raw.substr(begin, end - begin + 1);
    const bool digits = !entry.empty() && entry.size() <= 9 &&
                        std::all_of(entry.begin(), entry.end(), [](unsigned char c) { return std::isdigit(c) != 0; });
    require_argument(digits, operation, ": entry ", counts.size() + 1, " of '", spec, "' is '", entry,
                     "', not a whole number of blocks");
    counts.push_back(std::stoi(entry));
    require_argument(counts.back() >= 1, operation, ": entry ", counts.size(), " of '", spec,
                     "' is 0; every stage needs at least one transformer block");
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  require_argument(static_cast<int>(counts.size()) == stages, operation, ": '", spec, "' has ", counts.size(),
                   " entries for ", stages, " stages");
  const long total = std::accumulate(counts.begin(), counts.end(), 0L);
  require_argument(total == layers, operation, ": '", spec, "' adds up to ", total,
                   " blocks, but the model has L = ", layers);
  std::vector<StageBlocks> result;
  int first = 0;
  for (int k = 0; k < stages; ++k) {
    result.push_back(detail::stage_blocks(k, stages, first, first + counts[static_cast<std::size_t>(k)]));
    first += counts[static_cast<std::size_t>(k)];
  }
  return result;
}

}  // namespace trident::pipeline
