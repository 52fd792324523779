// The stage partitioner on hand-checked cuts, against brute force, and its errors; the
// explicit "3,2,2" cut.

#include "pipeline_test_helpers.hpp"
#include "trident_test.hpp"

#include <trident/pipeline/partition.hpp>

#include <algorithm>
#include <functional>
#include <limits>
#include <string>
#include <vector>

using namespace trident::pipeline;
using pipeline_test::contains;
using pipeline_test::message_of;

namespace {

// The [first, end) ranges of a cut, e.g. {{0, 3}, {3, 5}, {5, 7}}.
std::vector<std::pair<int, int>> ranges(const std::vector<LayerRange>& stages) {
  std::vector<std::pair<int, int>> result;
  for (const LayerRange& s : stages) result.emplace_back(s.first, s.end);
  return result;
}

using Ranges = std::vector<std::pair<int, int>>;

// The least largest stage cost over every cut, by enumeration.
double brute_force_optimum(const std::vector<double>& costs, int stages) {
  const int layers = static_cast<int>(costs.size());
  double best = std::numeric_limits<double>::infinity();
  std::vector<int> ends;
  std::function<void(int, int)> cut = [&](int k, int first) {
    if (k == stages - 1) {
      ends.push_back(layers);
      double largest = 0;
      int begin = 0;
      for (int s = 0; s < stages; ++s) {
        double c = 0;
        for (int b = begin; b < ends[static_cast<std::size_t>(s)]; ++b) c += costs[static_cast<std::size_t>(b)];
        largest = std::max(largest, c);
        begin = ends[static_cast<std::size_t>(s)];
      }
      best = std::min(best, largest);
      ends.pop_back();
      return;
    }
    for (int end = first + 1; end <= layers - (stages - 1 - k); ++end) {
      ends.push_back(end);
      cut(k + 1, end);
      ends.pop_back();
    }
  };
  cut(0, 0);
  return best;
}

}  // namespace

TEST_CASE("7 equal layers on 3 stages: 3, 2, 2", "[pipeline][partition]") {
  const Partition cut = partition_layers(std::vector<double>(7, 1.0), 3);
  CHECK(ranges(cut.stages) == Ranges{{0, 3}, {3, 5}, {5, 7}});
  CHECK(cut.stage_costs == std::vector<double>{3, 2, 2});
  CHECK(cut.max_stage_cost() == 3.0);
  CHECK(cut.stages[1].layers() == 2);
}

TEST_CASE("a heavy last layer (a head) gets a stage nearly to itself", "[pipeline][partition]") {
  // An embedding of 0.5, 8 unit blocks, a head of 3: the stage holding the head costs at least
  // 3, and the least largest cost, 4, is reached by 0.5 + 3 | 4 | 1 + 3 (3.5, 4, 4).
  std::vector<double> costs{0.5};
  costs.insert(costs.end(), 8, 1.0);
  costs.push_back(3.0);
  const Partition cut = partition_layers(costs, 3);
  CHECK(ranges(cut.stages) == Ranges{{0, 4}, {4, 8}, {8, 10}});
  CHECK(cut.stage_costs == std::vector<double>{3.5, 4, 4});
  // GPT-2-like: embedding 2, 48 blocks, head 6 on 8 stages: 1 + 5, 7 x 6, 1 + 1.
  std::vector<double> gpt{2.0};
  gpt.insert(gpt.end(), 48, 1.0);
  gpt.push_back(6.0);
  const Partition deep = partition_layers(gpt, 8);
  CHECK(ranges(deep.stages) == Ranges{{0, 6}, {6, 13}, {13, 20}, {20, 27}, {27, 34}, {34, 41}, {41, 48}, {48, 50}});
  CHECK(deep.max_stage_cost() == 7.0);
}

TEST_CASE("unequal layers: the exact optimum, equal to brute force", "[pipeline][partition]") {
  // 1..6 on 3 stages: the last stage must be {6} alone (5 + 6 > 9), then 1+2+3 | 4+5.
  const Partition cut = partition_layers({1, 2, 3, 4, 5, 6}, 3);
  CHECK(ranges(cut.stages) == Ranges{{0, 3}, {3, 5}, {5, 6}});
  CHECK(cut.max_stage_cost() == 9.0);

  const std::vector<std::vector<double>> models = {{3, 1, 4, 1, 5, 9, 2, 6, 5, 3},
                                                   {0.5, 0.5, 8, 0.5, 0.5, 0.5, 0.5},
                                                   {2, 7, 1, 8, 2, 8, 1, 8},
                                                   {1, 1, 1, 1},
                                                   {0, 0, 5, 0, 0}};
  for (const auto& costs : models) {
    for (int stages = 1; stages <= std::min<int>(5, static_cast<int>(costs.size())); ++stages) {
      INFO("L=" << costs.size() << " stages=" << stages);
      const Partition p = partition_layers(costs, stages);
      CHECK(p.max_stage_cost() == Approx(brute_force_optimum(costs, stages)).epsilon(1e-12));
      // Contiguous, every layer once, every stage at least one layer, costs summed right.
      int next = 0;
      for (std::size_t s = 0; s < p.stages.size(); ++s) {
        CHECK(p.stages[s].first == next);
        CHECK(p.stages[s].layers() >= 1);
        double cost = 0;
        for (int b = p.stages[s].first; b < p.stages[s].end; ++b) cost += costs[static_cast<std::size_t>(b)];
        CHECK(p.stage_costs[s] == cost);
        next = p.stages[s].end;
      }
      CHECK(next == static_cast<int>(costs.size()));
    }
  }
}

TEST_CASE("one stage holds everything; as many stages as layers get one each", "[pipeline][partition]") {
  const Partition one = partition_layers({1, 2, 3}, 1);
  CHECK(ranges(one.stages) == Ranges{{0, 3}});
  CHECK(one.stage_costs == std::vector<double>{6});
  CHECK(ranges(partition_layers({5, 1, 1}, 3).stages) == Ranges{{0, 1}, {1, 2}, {2, 3}});
}

TEST_CASE("partition errors name the numbers", "[pipeline][partition]") {
  using trident::InvalidArgument;
  std::string m = message_of<InvalidArgument>([] { partition_layers({1, 1}, 3); });
  CHECK(contains(m, "2 layers cannot fill 3 stages"));
  m = message_of<InvalidArgument>([] { partition_layers({1, -2, 1}, 2); });
  CHECK(contains(m, "layer 1 costs -2"));
  m = message_of<InvalidArgument>([] { partition_layers({1, 1}, 0); });
  CHECK(contains(m, "got 0"));
}

TEST_CASE("an explicit cut: parse_stage_layers", "[pipeline][partition]") {
  const std::vector<LayerRange> cut = parse_stage_layers(" 3, 2 ,2", 7, 3);
  CHECK(ranges(cut) == Ranges{{0, 3}, {3, 5}, {5, 7}});
  CHECK(ranges(parse_stage_layers("4", 4, 1)) == Ranges{{0, 4}});

  using trident::InvalidArgument;
  std::string m = message_of<InvalidArgument>([] { parse_stage_layers("3,2", 7, 3); });
  CHECK(contains(m, "'3,2' has 2 entries for 3 stages"));
  m = message_of<InvalidArgument>([] { parse_stage_layers("3,2,3", 7, 3); });
  CHECK(contains(m, "'3,2,3' adds up to 8 layers, but the model has 7"));
  m = message_of<InvalidArgument>([] { parse_stage_layers("3,x,2", 7, 3); });
  CHECK(contains(m, "entry 2 of '3,x,2' is 'x', not a whole number"));
  m = message_of<InvalidArgument>([] { parse_stage_layers("3,,4", 7, 3); });
  CHECK(contains(m, "entry 2 of '3,,4' is ''"));
  m = message_of<InvalidArgument>([] { parse_stage_layers("3,0,4", 7, 3); });
  CHECK(contains(m, "entry 2 of '3,0,4' is 0"));
  m = message_of<InvalidArgument>([] { parse_stage_layers("1,1", 2, 3); });
  CHECK(contains(m, "2 layers cannot fill 3 stages"));
}
