// The schedule generators: their exact order on small cases written out by hand, their
// argument checks, and the validity of every schedule they produce up to p = 8, m = 32, v = 4.

#include "pipeline_test_helpers.hpp"
#include "trident_test.hpp"

#include <trident/pipeline/schedules.hpp>
#include <trident/pipeline/validate.hpp>

#include <map>
#include <set>
#include <string>
#include <utility>

using namespace trident::pipeline;
using pipeline_test::contains;
using pipeline_test::message_of;

TEST_CASE("1F1B with p = 2, m = 3 in the order written out by hand", "[pipeline]") {
  const Schedule s = one_f_one_b(2, 3);
  // Rank 0 warms up with p - 0 - 1 = 1 forward; the last rank alternates from the start.
  CHECK(to_string(s) ==
        "1f1b p=2 m=3 v=1\n"
        "rank 0: F0 F1 B0 F2 B1 B2\n"
        "rank 1: F0 B0 F1 B1 F2 B2");
  CHECK(to_string(s, true) ==
        "1f1b p=2 m=3 v=1\n"
        "rank 0: F0 sF0>1 F1 sF1>1 rB0<1 B0 F2 sF2>1 rB1<1 B1 rB2<1 B2\n"
        "rank 1: rF0<0 F0 B0 sB0>0 rF1<0 F1 B1 sB1>0 rF2<0 F2 B2 sB2>0");
}

TEST_CASE("GPipe runs all forwards, then all backwards", "[pipeline]") {
  CHECK(to_string(gpipe(3, 2), true) ==
        "gpipe p=3 m=2 v=1\n"
        "rank 0: F0 sF0>1 F1 sF1>1 rB0<1 B0 rB1<1 B1\n"
        "rank 1: rF0<0 F0 sF0>2 rF1<0 F1 sF1>2 rB0<2 B0 sB0>0 rB1<2 B1 sB1>0\n"
        "rank 2: rF0<1 F0 rF1<1 F1 B0 sB0>1 B1 sB1>1");
}

TEST_CASE("ZB-H1 with p = 2, m = 3 in the order written out by hand", "[pipeline]") {
  // Rank 0: p forwards, Bi0, W0, one steady F Bi W, one cool-down Bi W.
  // Rank 1: F0 Bi0, one steady 1F1B pair with W held back, W0, F2 Bi2 W1, then the held W2.
  CHECK(to_string(zero_bubble_h1(2, 3)) ==
        "zb p=2 m=3 v=1\n"
        "rank 0: F0 F1 Bi0 W0 F2 Bi1 W1 Bi2 W2\n"
        "rank 1: F0 Bi0 F1 Bi1 W0 F2 Bi2 W1 W2");
}

TEST_CASE("interleaved 1F1B with p = 2, m = 4, v = 2 in Megatron's order", "[pipeline]") {
  // Forward k runs chunk (k mod 4) / 2 of micro-batch (k / 4) 2 + k mod 2; rank 0 warms up
  // with (v - 1) p + 2 (p - 1) = 4 forwards, rank 1 with 2.
  const Schedule s = interleaved_one_f_one_b(2, 4, 2);
  CHECK(to_string(s) ==
        "interleaved p=2 m=4 v=2\n"
        "rank 0: F0c0 F1c0 F0c1 F1c1 F2c0 B0c1 F3c0 B1c1 F2c1 B0c0 F3c1 B1c0 B2c1 B3c1 B2c0 B3c0\n"
        "rank 1: F0c0 F1c0 F0c1 B0c1 F1c1 B1c1 F2c0 B0c0 F3c0 B1c0 F2c1 B2c1 F3c1 B3c1 B2c0 B3c0");
  // Stage 1 (rank 1, chunk 0) hands micro-batch 0 to stage 2 (rank 0, chunk 1).
  const auto& rank1 = s.actions_of(1);
  CHECK(rank1[2] == Action{ActionType::send_forward, 0, 0, 0});
  CHECK(s.stage_of(0, Action{ActionType::forward, 0, 1, -1}) == 2);
}

TEST_CASE("make_schedule picks generators by name", "[pipeline]") {
  CHECK(make_schedule("gpipe", 4, 8).actions == gpipe(4, 8).actions);
  CHECK(make_schedule("1f1b", 4, 8).actions == one_f_one_b(4, 8).actions);
  CHECK(make_schedule("interleaved", 4, 8, 3).actions == interleaved_one_f_one_b(4, 8, 3).actions);
  CHECK(make_schedule("zb", 4, 8).actions == zero_bubble_h1(4, 8).actions);
  CHECK(make_schedule("zb", 4, 8).name == "zb");
}

TEST_CASE("generators reject bad arguments, naming the values", "[pipeline]") {
  using trident::InvalidArgument;
  std::string m = message_of<InvalidArgument>([] { gpipe(0, 4); });
  CHECK(contains(m, "p = 0"));
  m = message_of<InvalidArgument>([] { one_f_one_b(2, 0); });
  CHECK(contains(m, "m = 0"));
  m = message_of<InvalidArgument>([] { interleaved_one_f_one_b(4, 6, 2); });
  CHECK(contains(m, "m = 6"));
  CHECK(contains(m, "p = 4"));
  CHECK(contains(m, "multiple"));
  m = message_of<InvalidArgument>([] { interleaved_one_f_one_b(2, 4, 0); });
  CHECK(contains(m, "v = 0"));
  m = message_of<InvalidArgument>([] { zero_bubble_h1(4, 3); });
  CHECK(contains(m, "m = 3"));
  CHECK(contains(m, "p = 4"));
  m = message_of<InvalidArgument>([] { make_schedule("1f1b", 2, 4, 2); });
  CHECK(contains(m, "v = 2"));
  CHECK(contains(m, "1f1b"));
  m = message_of<InvalidArgument>([] { make_schedule("pipedream", 2, 4); });
  CHECK(contains(m, "unknown schedule 'pipedream'"));
  m = message_of<InvalidArgument>([] { make_schedule("gpipe", 2, 4, -1); });
  CHECK(contains(m, "v = -1"));
  // 1F1B with fewer micro-batches than ranks is allowed: the warm-up is cut short.
  CHECK(to_string(one_f_one_b(3, 1)) == "1f1b p=3 m=1 v=1\nrank 0: F0 B0\nrank 1: F0 B0\nrank 2: F0 B0");
}

namespace {

// Counts compute passes and checks the message tags of one valid schedule.
void check_shape_and_tags(const Schedule& s) {
  std::map<ActionType, int> passes;
  // Tags must be equal on both sides of a message and distinct between one ordered pair of ranks.
  std::map<std::pair<int, int>, std::set<int>> tags_sent, tags_received;
  const int tag_bound = 2 * s.micro_batches * s.chunks;
  bool tags_in_range = true;
  for (int rank = 0; rank < s.ranks; ++rank) {
    for (const Action& a : s.actions_of(rank)) {
      if (is_compute(a.type)) {
        ++passes[a.type];
        continue;
      }
      const int tag = message_tag(s, rank, a);
      tags_in_range = tags_in_range && tag >= 0 && tag < tag_bound;
      if (is_send(a.type)) tags_sent[{rank, a.peer}].insert(tag);
      if (is_recv(a.type)) tags_received[{a.peer, rank}].insert(tag);
    }
  }
  const int expected = s.stages() * s.micro_batches;
  CHECK(passes[ActionType::forward] == expected);
  if (s.name == "zb") {
    CHECK(passes[ActionType::backward_input] == expected);
    CHECK(passes[ActionType::backward_weight] == expected);
  } else {
    CHECK(passes[ActionType::backward] == expected);
  }
  CHECK(tags_in_range);
  CHECK(tags_sent == tags_received);
  std::size_t transfers = 0;
  for (const auto& pair : tags_sent) transfers += pair.second.size();
  // Every stage boundary carries one activation and one gradient per micro-batch, unless
  // both stages share a rank (p = 1).
  const std::size_t boundaries = s.ranks > 1 ? static_cast<std::size_t>(s.stages() - 1) : 0;
  CHECK(transfers == 2 * boundaries * static_cast<std::size_t>(s.micro_batches));
}

}  // namespace

TEST_CASE("every generated schedule up to p = 8, m = 32, v = 4 is valid", "[pipeline]") {
  int checked = 0;
  for (int p = 1; p <= 8; ++p) {
    for (int m = 1; m <= 32; ++m) {
      for (const std::string name : {"gpipe", "1f1b", "zb"}) {
        if (name == "zb" && m < p) continue;
        const Schedule s = make_schedule(name, p, m);
        INFO(name << " p=" << p << " m=" << m);
        CHECK_NOTHROW(validate(s));
        check_shape_and_tags(s);
        ++checked;
      }
      for (int v = 1; v <= 4; ++v) {
        if (m % p != 0) continue;
        const Schedule s = interleaved_one_f_one_b(p, m, v);
        INFO("interleaved p=" << p << " m=" << m << " v=" << v);
        CHECK_NOTHROW(validate(s));
        check_shape_and_tags(s);
        ++checked;
      }
    }
  }
  // 256 GPipe + 256 1F1B + 228 ZB-H1 (m >= p) + 4 * (32+16+10+8+6+5+4+4) interleaved.
  CHECK(checked == 256 + 256 + 228 + 4 * 85);
}
