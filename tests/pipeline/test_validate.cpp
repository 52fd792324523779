// The validator rejects each kind of broken schedule with a message that names the fault,
// and accepts the local hand-over of a one-rank interleaved schedule.

#include "pipeline_test_helpers.hpp"
#include "trident_test.hpp"

#include <trident/pipeline/schedules.hpp>
#include <trident/pipeline/validate.hpp>

#include <string>
#include <utility>

using namespace trident::pipeline;
using pipeline_test::contains;
using pipeline_test::index_of;
using pipeline_test::message_of;

namespace {

using T = ActionType;

std::string validation_error(const Schedule& s) {
  return message_of<trident::Error>([&] { validate(s); });
}

void erase(Schedule& s, int rank, const Action& action) {
  auto& list = s.actions[static_cast<std::size_t>(rank)];
  list.erase(list.begin() + static_cast<std::ptrdiff_t>(index_of(s, rank, action)));
}

}  // namespace

TEST_CASE("a dropped receive leaves its send unmatched", "[pipeline][validate]") {
  Schedule s = one_f_one_b(2, 3);
  erase(s, 1, {T::recv_forward, 1, 0, 0});
  const std::string m = validation_error(s);
  INFO(m);
  CHECK(contains(m, "rank 0 action 3 (send_forward of micro-batch 1 from stage 0 to rank 1)"));
  CHECK(contains(m, "has no matching recv_forward on rank 1"));
}

TEST_CASE("a dropped send leaves its receive unmatched", "[pipeline][validate]") {
  Schedule s = one_f_one_b(2, 3);
  erase(s, 1, {T::send_backward, 0, 0, 0});
  const std::string m = validation_error(s);
  INFO(m);
  CHECK(contains(m, "rank 0 action 4 (recv_backward of micro-batch 0 for stage 0 from rank 1)"));
  CHECK(contains(m, "has no matching send_backward on rank 1"));
}

TEST_CASE("a backward before its forward is a dependency fault", "[pipeline][validate]") {
  Schedule s = one_f_one_b(2, 3);
  auto& rank1 = s.actions[1];
  const std::size_t f1 = index_of(s, 1, {T::forward, 1, 0, -1});
  const std::size_t b1 = index_of(s, 1, {T::backward, 1, 0, -1});
  REQUIRE(b1 == f1 + 1);
  std::swap(rank1[f1], rank1[b1]);
  const std::string m = validation_error(s);
  INFO(m);
  CHECK(contains(m, "rank 1 action 5 (backward of micro-batch 1 at stage 1) runs before its forward"));
}

TEST_CASE("a pass before the receive it consumes, a send before its producer", "[pipeline][validate]") {
  Schedule late_receive = one_f_one_b(2, 3);
  auto& rank1 = late_receive.actions[1];
  const std::size_t r1 = index_of(late_receive, 1, {T::recv_forward, 1, 0, 0});
  std::swap(rank1[r1], rank1[r1 + 1]);
  std::string m = validation_error(late_receive);
  INFO(m);
  CHECK(contains(m, "rank 1 action 4 (forward of micro-batch 1 at stage 1) runs before its recv_forward from rank 0"));

  Schedule early_send = one_f_one_b(2, 3);
  auto& rank0 = early_send.actions[0];
  const std::size_t s1 = index_of(early_send, 0, {T::send_forward, 1, 0, 1});
  std::swap(rank0[s1 - 1], rank0[s1]);
  m = validation_error(early_send);
  INFO(m);
  CHECK(contains(m,
                 "rank 0 action 2 (send_forward of micro-batch 1 from stage 0 to rank 1) is posted before the "
                 "forward that produces it"));
}

TEST_CASE("two ranks that both receive first deadlock", "[pipeline][validate]") {
  Schedule s = one_f_one_b(2, 3);
  auto& rank0 = s.actions[0];
  const std::size_t r0 = index_of(s, 0, {T::recv_backward, 0, 0, 1});
  const Action receive = rank0[r0];
  rank0.erase(rank0.begin() + static_cast<std::ptrdiff_t>(r0));
  rank0.insert(rank0.begin(), receive);
  const std::string m = validation_error(s);
  INFO(m);
  CHECK(contains(m, "deadlock"));
  CHECK(contains(m,
                 "rank 0 action 0 (recv_backward of micro-batch 0 for stage 0 from rank 1) waits for "
                 "send_backward on rank 1"));
  CHECK(contains(m,
                 "rank 1 action 0 (recv_forward of micro-batch 0 for stage 1 from rank 0) waits for "
                 "send_forward on rank 0"));
}

TEST_CASE("a duplicated forward and a missing backward", "[pipeline][validate]") {
  Schedule duplicated = one_f_one_b(2, 3);
  duplicated.actions[0].push_back(compute(T::forward, 2));
  std::string m = validation_error(duplicated);
  INFO(m);
  CHECK(
      contains(m, "rank 0 action 12 (forward of micro-batch 2 at stage 0) is duplicated: it already ran as action 6"));

  Schedule missing = one_f_one_b(2, 3);
  erase(missing, 0, compute(T::backward, 2));
  m = validation_error(missing);
  INFO(m);
  CHECK(contains(m, "stage 0 (rank 0) never runs the backward (or backward_input) of micro-batch 2"));
}

TEST_CASE("a dropped backward_weight and a mixed split backward", "[pipeline][validate]") {
  Schedule s = zero_bubble_h1(2, 3);
  erase(s, 0, compute(T::backward_weight, 1));
  std::string m = validation_error(s);
  INFO(m);
  CHECK(contains(m, "stage 0 (rank 0) runs backward_input of micro-batch 1 but never its backward_weight"));

  Schedule mixed = zero_bubble_h1(2, 3);
  mixed.actions[1].push_back(compute(T::backward, 2));
  m = validation_error(mixed);
  INFO(m);
  CHECK(contains(m, "(backward of micro-batch 2 at stage 1): the backward of this micro-batch is also split"));
}

TEST_CASE("a transfer to a rank that does not hold the neighbour stage", "[pipeline][validate]") {
  Schedule s = one_f_one_b(4, 4);
  auto& rank1 = s.actions[1];
  rank1[index_of(s, 1, {T::send_forward, 0, 0, 2})].peer = 3;
  std::string m = validation_error(s);
  INFO(m);
  CHECK(contains(m,
                 "rank 1 action 2 (send_forward of micro-batch 0 from stage 1 to rank 3): peer rank 3 is not "
                 "rank 2, which holds the neighbour stage 2"));

  Schedule past_the_end = one_f_one_b(2, 1);
  past_the_end.actions[1].push_back({T::send_forward, 0, 0, 0});
  m = validation_error(past_the_end);
  INFO(m);
  CHECK(contains(m, "stage 1 has no next stage"));
}

TEST_CASE("out-of-range fields and a wrong number of lists", "[pipeline][validate]") {
  Schedule s = one_f_one_b(2, 2);
  s.actions[0][0].micro_batch = 2;
  CHECK(contains(validation_error(s), "micro-batch 2 is outside [0, 2)"));
  s = one_f_one_b(2, 2);
  s.actions[1][1].chunk = 1;
  CHECK(contains(validation_error(s), "chunk 1 is outside [0, 1)"));
  s = one_f_one_b(2, 2);
  s.actions.pop_back();
  CHECK(contains(validation_error(s), "has 1 action lists for p = 2 ranks"));
}

TEST_CASE("stages on the same rank hand over locally, without transfers", "[pipeline][validate]") {
  const Schedule local = interleaved_one_f_one_b(1, 3, 2);
  CHECK(to_string(local, true) ==
        "interleaved p=1 m=3 v=2\nrank 0: F0c0 F0c1 B0c1 F1c0 B0c0 F1c1 B1c1 F2c0 B1c0 "
        "F2c1 B2c1 B2c0");
  CHECK_NOTHROW(validate(local));

  Schedule wrong_order = local;  // chunk 1's forward before chunk 0's
  std::swap(wrong_order.actions[0][0], wrong_order.actions[0][1]);
  CHECK(contains(validation_error(wrong_order),
                 "rank 0 action 0 (forward of micro-batch 0 at stage 1) runs before the forward of stage 0 on the same "
                 "rank"));

  Schedule self_transfer = local;
  self_transfer.actions[0].insert(self_transfer.actions[0].begin() + 1, Action{T::send_forward, 0, 0, 0});
  CHECK(contains(validation_error(self_transfer), "stages 0 and 1 both live on rank 0"));
}
