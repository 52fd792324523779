#pragma once
// Cuts a model's layers (any sequence of them, each with a cost) into contiguous pipeline
// stages: by the costs, balanced exactly, or as an explicit count per stage. Every stage holds
// at least one layer, so there must be at least as many layers as stages.
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

// The layers [first, end) one stage runs.
struct LayerRange {
  int first = 0;
  int end = 0;
  int layers() const { return end - first; }
};

struct Partition {
  std::vector<LayerRange> stages;
  std::vector<double> stage_costs;  // the sum of its layers' costs
  double max_stage_cost() const {
    return stage_costs.empty() ? 0.0 : *std::max_element(stage_costs.begin(), stage_costs.end());
  }
};

namespace detail {

inline void require_cost(double cost, int index) {
  require_argument(std::isfinite(cost) && cost >= 0, "trident::pipeline::partition_layers: layer ", index, " costs ",
                   cost, "; costs must be finite and >= 0");
}

inline void require_enough_layers(const char* operation, int layers, int stages) {
  require_argument(stages >= 1, operation, ": the number of stages must be at least 1, got ", stages);
  require_argument(layers >= stages, operation, ": ", layers, " layers cannot fill ", stages,
                   " stages; every stage needs at least one layer");
}

}  // namespace detail

// The cut that minimises the largest stage cost (exactly, by dynamic programming over the
// cut points, O(stages * L^2)). Among the cuts that reach that optimum it takes the most
// even one (least sum of squared stage costs), and among those the one whose earlier stages
// hold more layers: 7 layers of cost 1 on 3 stages give 3, 2, 2.
inline Partition partition_layers(const std::vector<double>& layer_costs, int stages) {
  const int layers = static_cast<int>(layer_costs.size());
  detail::require_enough_layers("trident::pipeline::partition_layers", layers, stages);
  for (int b = 0; b < layers; ++b) detail::require_cost(layer_costs[static_cast<std::size_t>(b)], b);

  std::vector<double> prefix(static_cast<std::size_t>(layers) + 1, 0.0);
  std::partial_sum(layer_costs.begin(), layer_costs.end(), prefix.begin() + 1);
  const auto cost = [&](int first, int end) {
    return prefix[static_cast<std::size_t>(end)] - prefix[static_cast<std::size_t>(first)];
  };
  const double infinity = std::numeric_limits<double>::infinity();
  const auto n = static_cast<std::size_t>(stages), count = static_cast<std::size_t>(layers);
  const auto at = [count](std::size_t k, std::size_t j) { return k * (count + 1) + j; };

  // 1. fewest_max[k][j]: the least possible largest cost of stages k.. over layers [j, L).
  std::vector<double> fewest_max((n + 1) * (count + 1), infinity);
  fewest_max[at(n, count)] = 0.0;
  for (int k = stages - 1; k >= 0; --k) {
    const int layers_after = stages - 1 - k;  // the later stages need one layer each
    for (int first = k; first + 1 + layers_after <= layers; ++first) {
      double best = infinity;
      for (int end = first + 1; end + layers_after <= layers; ++end)
        best = std::min(best, std::max(cost(first, end), fewest_max[at(k + 1, end)]));
      fewest_max[at(k, first)] = best;
    }
  }
  const double optimum = fewest_max[at(0, 0)];
  const double slack = 1e-12 * std::max(1.0, optimum);  // sums taken in another order may round differently

  // 2. squares[k][j]: the least sum of squared costs of stages k.. over [j, L), each <= optimum.
  std::vector<double> squares((n + 1) * (count + 1), infinity);
  squares[at(n, count)] = 0.0;
  for (int k = stages - 1; k >= 0; --k) {
    const int layers_after = stages - 1 - k;
    for (int first = k; first + 1 + layers_after <= layers; ++first) {
      double best = infinity;
      for (int end = first + 1; end + layers_after <= layers; ++end) {
        const double c = cost(first, end);
        if (c <= optimum + slack) best = std::min(best, c * c + squares[at(k + 1, end)]);
      }
      squares[at(k, first)] = best;
    }
  }

  // 3. Walk forward, giving each stage the most layers that keep both optima.
  Partition partition;
  int first = 0;
  for (int k = 0; k < stages; ++k) {
    const int layers_after = stages - 1 - k;
    const double target = squares[at(static_cast<std::size_t>(k), static_cast<std::size_t>(first))];
    const double square_slack = 1e-12 * std::max(1.0, target);
    int chosen = -1;
    for (int end = layers - layers_after; end > first && chosen < 0; --end) {
      const double c = cost(first, end);
      if (c <= optimum + slack && c * c + squares[at(k + 1, end)] <= target + square_slack) chosen = end;
    }
    require(chosen > first, "trident::pipeline::partition_layers: no cut found for stage ", k, " (internal error)");
    partition.stages.push_back({first, chosen});
    partition.stage_costs.push_back(cost(first, chosen));
    first = chosen;
  }
  return partition;
}

// An explicit cut, "3,2,2": the number of layers of each stage, first to last. The entries
// must be `stages` whole numbers >= 1 that add up to `layers`.
inline std::vector<LayerRange> parse_stage_layers(const std::string& spec, int layers, int stages) {
  const char* operation = "trident::pipeline::parse_stage_layers";
  detail::require_enough_layers(operation, layers, stages);
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
                     "', not a whole number of layers");
    counts.push_back(std::stoi(entry));
    require_argument(counts.back() >= 1, operation, ": entry ", counts.size(), " of '", spec,
                     "' is 0; every stage needs at least one layer");
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  require_argument(static_cast<int>(counts.size()) == stages, operation, ": '", spec, "' has ", counts.size(),
                   " entries for ", stages, " stages");
  const long total = std::accumulate(counts.begin(), counts.end(), 0L);
  require_argument(total == layers, operation, ": '", spec, "' adds up to ", total, " layers, but the model has ",
                   layers);
  std::vector<LayerRange> result;
  int first = 0;
  for (int count : counts) {
    result.push_back({first, first + count});
    first += count;
  }
  return result;
}

}  // namespace trident::pipeline
