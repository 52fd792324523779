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
std::vector<std::pair<int, int>> ranges(const std::vector<StageBlocks>& stages) {
  std::vector<std::pair<int, int>> result;
  for (const StageBlocks& s : stages) result.emplace_back(s.first_block, s.end_block);
  return result;
}

using Ranges = std::vector<std::pair<int, int>>;

// The least largest stage cost over every cut, by enumeration.
double brute_force_optimum(const std::vector<double>& costs, int stages, double embedding, double head) {
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
        if (s == 0) c += embedding;
        if (s == stages - 1) c += head;
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

TEST_CASE("7 equal blocks on 3 stages: 3, 2, 2", "[pipeline][partition]") {
  const Partition cut = partition_stages(std::vector<double>(7, 1.0), 3);
  CHECK(ranges(cut.stages) == Ranges{{0, 3}, {3, 5}, {5, 7}});
  CHECK(cut.stage_costs == std::vector<double>{3, 2, 2});
  CHECK(cut.max_stage_cost() == 3.0);
  CHECK(cut.stages[0].holds_embedding);
  CHECK_FALSE(cut.stages[0].holds_head);
  CHECK_FALSE(cut.stages[1].holds_embedding);
  CHECK_FALSE(cut.stages[1].holds_head);
  CHECK(cut.stages[2].holds_head);
  CHECK(cut.stages[1].blocks() == 2);
}

TEST_CASE("a heavy head leaves the last stage one block", "[pipeline][partition]") {
  // 8 unit blocks, embedding 0.5, norm + head 3: the last stage costs at least 1 + 3 = 4, and
  // 4 is reached only by 3, 4, 1 (3.5, 4, 4).
  const Partition cut = partition_stages(std::vector<double>(8, 1.0), 3, 0.5, 3.0);
  CHECK(ranges(cut.stages) == Ranges{{0, 3}, {3, 7}, {7, 8}});
  CHECK(cut.stage_costs == std::vector<double>{3.5, 4, 4});
  // GPT-2-like: 48 blocks on 8 stages, embedding 2 and head 6 blocks' worth: 5, 7 x 6, 1.
  const Partition gpt = partition_stages(std::vector<double>(48, 1.0), 8, 2.0, 6.0);
  CHECK(ranges(gpt.stages) == Ranges{{0, 5}, {5, 12}, {12, 19}, {19, 26}, {26, 33}, {33, 40}, {40, 47}, {47, 48}});
  CHECK(gpt.max_stage_cost() == 7.0);
}

TEST_CASE("unequal blocks: the exact optimum, equal to brute force", "[pipeline][partition]") {
  // 1..6 on 3 stages: the last stage must be {6} alone (5 + 6 > 9), then 1+2+3 | 4+5.
  const Partition cut = partition_stages({1, 2, 3, 4, 5, 6}, 3);
  CHECK(ranges(cut.stages) == Ranges{{0, 3}, {3, 5}, {5, 6}});
  CHECK(cut.max_stage_cost() == 9.0);

  const std::vector<std::vector<double>> models = {
      {3, 1, 4, 1, 5, 9, 2, 6, 5, 3}, {0.5, 0.5, 8, 0.5, 0.5, 0.5, 0.5}, {2, 7, 1, 8, 2, 8, 1, 8}, {1, 1, 1, 1}};
  for (const auto& costs : models) {
    for (int stages = 1; stages <= std::min<int>(4, static_cast<int>(costs.size())); ++stages) {
      for (const double head : {0.0, 2.5, 10.0}) {
        INFO("L=" << costs.size() << " stages=" << stages << " head=" << head);
        const Partition p = partition_stages(costs, stages, 1.0, head);
        CHECK(p.max_stage_cost() == Approx(brute_force_optimum(costs, stages, 1.0, head)).epsilon(1e-12));
        // Contiguous, every block once, every stage at least one block.
        int next = 0;
        for (const StageBlocks& s : p.stages) {
          CHECK(s.first_block == next);
          CHECK(s.blocks() >= 1);
          next = s.end_block;
        }
        CHECK(next == static_cast<int>(costs.size()));
      }
    }
  }
}

TEST_CASE("one stage holds everything; as many stages as blocks get one each", "[pipeline][partition]") {
  const Partition one = partition_stages({1, 2, 3}, 1, 0.5, 0.25);
  CHECK(ranges(one.stages) == Ranges{{0, 3}});
  CHECK(one.stages[0].holds_embedding);
  CHECK(one.stages[0].holds_head);
  CHECK(one.stage_costs == std::vector<double>{6.75});
  CHECK(ranges(partition_stages({5, 1, 1}, 3).stages) == Ranges{{0, 1}, {1, 2}, {2, 3}});
}

TEST_CASE("partition errors name the numbers", "[pipeline][partition]") {
  using trident::InvalidArgument;
  std::string m = message_of<InvalidArgument>([] { partition_stages({1, 1}, 3); });
  CHECK(contains(m, "L = 2 blocks cannot fill 3 stages"));
  m = message_of<InvalidArgument>([] { partition_stages({1, -2, 1}, 2); });
  CHECK(contains(m, "block 1 costs -2"));
  m = message_of<InvalidArgument>([] { partition_stages({1, 1}, 0); });
  CHECK(contains(m, "got 0"));
  m = message_of<InvalidArgument>([] { partition_stages({1, 1}, 2, 0, -1); });
  CHECK(contains(m, "head costs -1"));
}

TEST_CASE("an explicit cut: parse_stage_layers", "[pipeline][partition]") {
  const std::vector<StageBlocks> cut = parse_stage_layers(" 3, 2 ,2", 7, 3);
  CHECK(ranges(cut) == Ranges{{0, 3}, {3, 5}, {5, 7}});
  CHECK(cut[0].holds_embedding);
  CHECK(cut[2].holds_head);
  CHECK(ranges(parse_stage_layers("4", 4, 1)) == Ranges{{0, 4}});

  using trident::InvalidArgument;
  std::string m = message_of<InvalidArgument>([] { parse_stage_layers("3,2", 7, 3); });
  CHECK(contains(m, "'3,2' has 2 entries for 3 stages"));
  m = message_of<InvalidArgument>([] { parse_stage_layers("3,2,3", 7, 3); });
  CHECK(contains(m, "'3,2,3' adds up to 8 blocks, but the model has L = 7"));
  m = message_of<InvalidArgument>([] { parse_stage_layers("3,x,2", 7, 3); });
  CHECK(contains(m, "entry 2 of '3,x,2' is 'x', not a whole number"));
  m = message_of<InvalidArgument>([] { parse_stage_layers("3,,4", 7, 3); });
  CHECK(contains(m, "entry 2 of '3,,4' is ''"));
  m = message_of<InvalidArgument>([] { parse_stage_layers("3,0,4", 7, 3); });
  CHECK(contains(m, "entry 2 of '3,0,4' is 0"));
  m = message_of<InvalidArgument>([] { parse_stage_layers("1,1", 2, 3); });
  CHECK(contains(m, "L = 2 blocks cannot fill 3 stages"));
}
