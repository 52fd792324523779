// The timing simulator against timelines worked out by hand and against the analytic bubble
// formulas, and the activation memory of each schedule.

#include "pipeline_test_helpers.hpp"
#include "trident_test.hpp"

#include <trident/pipeline/activation_memory.hpp>
#include <trident/pipeline/bubble.hpp>
#include <trident/pipeline/schedules.hpp>
#include <trident/pipeline/simulate.hpp>
#include <trident/pipeline/simulate_shared.hpp>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

using namespace trident::pipeline;
using pipeline_test::contains;
using pipeline_test::message_of;

namespace {

// The start and end of each compute pass of one rank, in list order.
std::vector<std::pair<double, double>> pass_times(const Simulation& sim, int rank) {
  std::vector<std::pair<double, double>> times;
  for (const TimedAction& t : sim.timeline[static_cast<std::size_t>(rank)]) {
    if (is_compute(t.action.type)) times.emplace_back(t.start, t.end);
  }
  return times;
}

using Times = std::vector<std::pair<double, double>>;

}  // namespace

TEST_CASE("the 1F1B timeline for p = 2, m = 3 with F = 1, B = 2", "[pipeline][simulate]") {
  const Simulation sim = simulate(one_f_one_b(2, 3), 1.0, 1.5, 0.5);
  // Rank 0: F0 F1 B0 F2 B1 B2. B0 waits for rank 1's B0 (done at 4); B2 waits for rank 1's B2 (done at 10).
  CHECK(pass_times(sim, 0) == Times{{0, 1}, {1, 2}, {4, 6}, {6, 7}, {7, 9}, {10, 12}});
  // Rank 1: F0 B0 F1 B1 F2 B2, F0 waits for rank 0's F0.
  CHECK(pass_times(sim, 1) == Times{{1, 2}, {2, 4}, {4, 5}, {5, 7}, {7, 8}, {8, 10}});
  CHECK(sim.makespan == 12.0);
  CHECK(sim.busy == std::vector<double>{9.0, 9.0});
  CHECK(sim.bubble == std::vector<double>{0.25, 0.25});
  CHECK(sim.bubble_fraction() == 0.25);  // (p - 1) / (m + p - 1) = 1 / 4
}

TEST_CASE("transfers delay the receiver by their cost", "[pipeline][simulate]") {
  const Simulation sim = simulate(one_f_one_b(2, 1), 1.0, 1.0, 1.0, 0.5);
  CHECK(pass_times(sim, 0) == Times{{0, 1}, {5, 7}});
  CHECK(pass_times(sim, 1) == Times{{1.5, 2.5}, {2.5, 4.5}});
  CHECK(sim.makespan == 7.0);
  // Rank 1's receive of the activation waits from 0 to 1.5.
  const TimedAction& receive = sim.timeline[1][0];
  CHECK(receive.action.type == ActionType::recv_forward);
  CHECK(receive.start == 0.0);
  CHECK(receive.end == 1.5);
  CHECK(contains(message_of<trident::InvalidArgument>([] { simulate(gpipe(2, 2), 1, 1, 1, -1); }), "got -1"));
  CHECK(contains(message_of<trident::InvalidArgument>([] { simulate(gpipe(2, 2), 1, NAN, 1); }), "nan"));
}

TEST_CASE("GPipe and 1F1B bubbles equal (p - 1) / (m + p - 1) exactly", "[pipeline][simulate]") {
  for (int p : {1, 2, 3, 4, 8}) {
    for (int m : {1, 2, 3, 4, 7, 8, 16, 32}) {
      const double expected = gpipe_bubble_fraction(p, m);
      CHECK(expected == static_cast<double>(p - 1) / (m + p - 1));
      CHECK(one_f_one_b_bubble_fraction(p, m) == expected);
      // Unit passes, and a backward twice the forward split unevenly: the formula holds for any F, B.
      for (const Simulation& sim : {simulate(gpipe(p, m), 1, 1, 1), simulate(one_f_one_b(p, m), 1, 1, 1),
                                    simulate(one_f_one_b(p, m), 2, 3.5, 0.5)}) {
        INFO("p=" << p << " m=" << m);
        CHECK(sim.bubble_fraction() == expected);
        for (double rank_bubble : sim.bubble) CHECK(rank_bubble == expected);
      }
    }
  }
}

TEST_CASE("interleaving divides the 1F1B bubble by v", "[pipeline][simulate]") {
  for (int p : {1, 2, 4, 8}) {
    for (int m : {8, 16, 32}) {
      for (int v : {1, 2, 3, 4}) {
        INFO("p=" << p << " m=" << m << " v=" << v);
        // Each pass of a chunk costs one unit: idle (p - 1) chunk-passes against v m busy ones.
        const Simulation sim = simulate(interleaved_one_f_one_b(p, m, v), 1, 1, 1);
        const double expected = interleaved_bubble_fraction(p, m, v);
        CHECK(expected == static_cast<double>(p - 1) / (v * m + p - 1));
        CHECK(sim.bubble_fraction() == expected);
        CHECK(sim.makespan == 3.0 * (v * m + p - 1));
        CHECK(bubble_ratio(expected) == Approx(static_cast<double>(p - 1) / (v * m)).epsilon(1e-14));
      }
    }
  }
  CHECK(interleaved_bubble_fraction(4, 8, 1) == one_f_one_b_bubble_fraction(4, 8));
}

TEST_CASE("ZB-H1 cuts the 1F1B bubble to a third with equal passes", "[pipeline][simulate]") {
  for (int p : {1, 2, 3, 4, 8}) {
    for (int m = p; m <= 32; m += 5) {
      INFO("p=" << p << " m=" << m);
      const Simulation zb = simulate(zero_bubble_h1(p, m), 1, 1, 1);
      const Simulation ofob = simulate(one_f_one_b(p, m), 1, 1, 1);
      CHECK(zb.bubble_fraction() == static_cast<double>(p - 1) / (3 * m + p - 1));
      CHECK(zb.bubble_fraction() == zero_bubble_h1_bubble_fraction(p, m, 1, 1, 1));
      CHECK(zb.makespan - 3.0 * m == p - 1);
      CHECK(ofob.makespan - 3.0 * m == 3.0 * (p - 1));
    }
  }
}

TEST_CASE("ZB-H1 against its formula for unequal passes", "[pipeline][simulate]") {
  struct Case {
    double f, bi, w;
  };
  // The paper's regime W <= min(F, Bi), and beyond it, where the start-up waits dominate.
  for (const Case c : {Case{1, 1, 0.5}, Case{2, 2, 1}, Case{1, 2, 1}, Case{1, 0.5, 0.5}, Case{1, 1, 2}, Case{0.5, 2, 1},
                       Case{2, 0.5, 1.5}}) {
    for (int p : {2, 4, 8}) {
      for (int m : {8, 32}) {
        INFO("F=" << c.f << " Bi=" << c.bi << " W=" << c.w << " p=" << p << " m=" << m);
        const Simulation sim = simulate(zero_bubble_h1(p, m), c.f, c.bi, c.w);
        const double idle = (p - 1) * std::max({c.f + c.bi - c.w, c.f, c.bi});
        CHECK(sim.makespan == m * (c.f + c.bi + c.w) + idle);
        CHECK(sim.bubble_fraction() == Approx(zero_bubble_h1_bubble_fraction(p, m, c.f, c.bi, c.w)).epsilon(1e-14));
        for (double rank_bubble : sim.bubble) CHECK(rank_bubble == Approx(sim.bubble_fraction()).epsilon(1e-14));
      }
    }
  }
  CHECK(contains(message_of<trident::InvalidArgument>([] { zero_bubble_h1_bubble_fraction(4, 3, 1, 1, 1); }), "m = 3"));
}

TEST_CASE("per-stage pass costs from a cost function", "[pipeline][simulate]") {
  // GPipe, p = 2, m = 2: rank 1 twice as slow. Its forwards start at 1 and 3, back-to-back.
  const PassCost cost = [](int rank, const Action& pass) {
    return (rank == 1 ? 2.0 : 1.0) * (pass.type == ActionType::forward ? 1.0 : 2.0);
  };
  const Simulation sim = simulate(gpipe(2, 2), cost);
  CHECK(pass_times(sim, 1) == Times{{1, 3}, {3, 5}, {5, 9}, {9, 13}});
  CHECK(pass_times(sim, 0) == Times{{0, 1}, {1, 2}, {9, 11}, {13, 15}});
  CHECK(sim.makespan == 15.0);
  CHECK(sim.busy == std::vector<double>{6.0, 12.0});
}

TEST_CASE("peak activations: GPipe holds m, 1F1B p - r, ZB-H1 p until W", "[pipeline][memory]") {
  for (int p : {1, 2, 4, 8}) {
    for (int m : {1, 3, 8, 32}) {
      INFO("p=" << p << " m=" << m);
      CHECK(peak_activations(gpipe(p, m)) == std::vector<int>(static_cast<std::size_t>(p), m));
      const std::vector<int> ofob = peak_activations(one_f_one_b(p, m));
      for (int r = 0; r < p; ++r) CHECK(ofob[static_cast<std::size_t>(r)] == std::min(p - r, m));
      if (m < p) continue;
      const Schedule zb = zero_bubble_h1(p, m);
      const std::vector<int> zb_input = peak_activations(zb);
      for (int r = 0; r < p; ++r) CHECK(zb_input[static_cast<std::size_t>(r)] == p - r);
      // Counting until the weight gradient, every rank reaches 1F1B's rank-0 peak and no more.
      CHECK(peak_activations(zb, ActivationsFreedBy::backward_weight) ==
            std::vector<int>(static_cast<std::size_t>(p), p));
    }
  }
  // Interleaved, in chunk activations: rank 0's warm-up (v - 1) p + 2 (p - 1) plus one steady forward.
  CHECK(peak_activations(interleaved_one_f_one_b(4, 8, 2)) == std::vector<int>{11, 9, 7, 5});
  CHECK(peak_activations(interleaved_one_f_one_b(4, 4, 2)) == std::vector<int>{8, 8, 7, 5});
}

TEST_CASE("peak activations per chunk: the slots each chunk's stage keeps", "[pipeline][memory]") {
  // One chunk per rank: the rank's peak.
  for (int p : {2, 4})
    for (int m : {4, 8}) {
      const Schedule s = one_f_one_b(p, m);
      const auto per_chunk = peak_activations_per_chunk(s);
      const auto whole = peak_activations(s);
      for (int r = 0; r < p; ++r)
        CHECK(per_chunk[static_cast<std::size_t>(r)] == std::vector<int>{whole[static_cast<std::size_t>(r)]});
    }
  // Interleaved: each chunk's own peak; together at least the rank's.
  const Schedule s = interleaved_one_f_one_b(4, 8, 2);
  const auto per_chunk = peak_activations_per_chunk(s);
  const auto whole = peak_activations(s);
  for (int r = 0; r < 4; ++r) {
    const auto& chunks = per_chunk[static_cast<std::size_t>(r)];
    REQUIRE(chunks.size() == 2);
    CHECK(chunks[0] + chunks[1] >= whole[static_cast<std::size_t>(r)]);
    CHECK(chunks[0] <= 8);
    CHECK(chunks[1] <= 8);
    CHECK(chunks[0] >= chunks[1]);  // the first chunk fills first and drains last
  }
}

TEST_CASE("ranks with a core each replay as simulate() does", "[pipeline][simulate][shared]") {
  const auto cost = [](int rank, const Action& a) {
    return (a.type == ActionType::forward ? 1.0 : 2.0) + 0.25 * rank + 0.125 * a.micro_batch;
  };
  for (const Schedule& schedule : {one_f_one_b(3, 5), gpipe(2, 4), interleaved_one_f_one_b(2, 4, 2)}) {
    const Simulation alone = simulate(schedule, cost, 0.5);
    for (const SharedCores& sharing : {SharedCores{0, 4, 1, {}}, SharedCores{8, 2, 1, {}}, SharedCores{6, 2, 0, {}}}) {
      const Simulation shared = simulate(schedule, cost, 0.5, sharing);
      CHECK(shared.makespan == Approx(alone.makespan).epsilon(1e-12));
      for (int r = 0; r < schedule.ranks; ++r) {
        const Times a = pass_times(alone, r), b = pass_times(shared, r);
        REQUIRE(a.size() == b.size());
        for (std::size_t i = 0; i < a.size(); ++i) {
          CHECK(b[i].first == Approx(a[i].first).epsilon(1e-12));
          CHECK(b[i].second == Approx(a[i].second).epsilon(1e-12));
        }
      }
    }
  }
}

TEST_CASE("shared cores: waiting ranks that take a whole share halve every pass", "[pipeline][simulate][shared]") {
  // Two ranks on one core, the waiting one polling as hard as the computing one: each runs at 1/2
  // whatever the other does, so the timeline stretches by 2 (without transfer time).
  const Simulation alone = simulate(one_f_one_b(2, 4), 1.0, 1.5, 0.5);
  const auto cost = [](int, const Action& a) { return a.type == ActionType::forward ? 1.0 : 2.0; };
  CHECK(simulate(one_f_one_b(2, 4), cost, 0.0, SharedCores{1, 1, 1, {}}).makespan ==
        Approx(2 * alone.makespan).epsilon(1e-12));
  // Two copies of each of 2 ranks on 2 cores: the same.
  CHECK(simulate(one_f_one_b(2, 4), cost, 0.0, SharedCores{2, 2, 1, {}}).makespan ==
        Approx(2 * alone.makespan).epsilon(1e-12));
}

TEST_CASE("shared cores: waiting ranks that give their core back keep it busy", "[pipeline][simulate][shared]") {
  // One core, waiting ranks taking none of it, no transfer time: some rank can always compute,
  // so the step takes exactly the sum of every pass, for any schedule.
  const auto cost = [](int rank, const Action& a) {
    return (a.type == ActionType::forward ? 1.0 : a.type == ActionType::backward ? 2.5 : 1.25) + 0.5 * rank;
  };
  for (const Schedule& schedule : {one_f_one_b(2, 4), one_f_one_b(4, 8), gpipe(3, 3), zero_bubble_h1(2, 4)}) {
    double work = 0;
    for (int r = 0; r < schedule.ranks; ++r)
      for (const Action& a : schedule.actions_of(r))
        if (is_compute(a.type)) work += cost(r, a);
    const Simulation shared = simulate(schedule, cost, 0.0, SharedCores{1, 1, 0, {}});
    CHECK(shared.makespan == Approx(work).epsilon(1e-12));
    // With a core each it is shorter by the overlap, and never shorter than the busiest rank.
    CHECK(simulate(schedule, cost, 0.0).makespan < work);
  }
  // Two ranks, one of which does nearly everything: it keeps a whole core (no rank outruns one).
  const auto lopsided = [](int rank, const Action&) { return rank == 1 ? 10.0 : 0.01; };
  const Simulation two_cores = simulate(gpipe(2, 4), lopsided, 0.0, SharedCores{2, 2, 0, {}});
  CHECK(two_cores.makespan >= 80.0);
  CHECK(two_cores.makespan < 80.2);
}

TEST_CASE("bound cores: one group of all the cores is the host's balance", "[pipeline][simulate][shared]") {
  const auto cost = [](int rank, const Action& a) {
    return (a.type == ActionType::forward ? 1.0 : 2.0) + 0.5 * rank + 0.125 * a.micro_batch;
  };
  for (const Schedule& schedule : {one_f_one_b(2, 4), gpipe(2, 3), zero_bubble_h1(2, 4)})
    for (double share : {0.0, 0.3, 1.0}) {
      const SharedCores balanced{2, 2, share, {}}, one_group{2, 2, share, {BoundCores{2, {0, 1, 0, 1}}}};
      CHECK(simulate(schedule, cost, 0.25, one_group).makespan ==
            Approx(simulate(schedule, cost, 0.25, balanced).makespan).epsilon(1e-12));
    }
}

TEST_CASE("bound cores: copies of the busy stage bound to one core run at half speed", "[pipeline][simulate][shared]") {
  // Rank 1 does nearly everything: 4 forwards and 4 backwards of 10 each, 80 on a core of its own.
  const auto lopsided = [](int rank, const Action&) { return rank == 1 ? 10.0 : 0.01; };
  // Both copies of rank 1 on core 1: they halve each other for the whole step, though core 0 idles.
  const SharedCores crowded{2, 2, 0, {BoundCores{1, {0, 0}}, BoundCores{1, {1, 1}}}};
  const double makespan = simulate(gpipe(2, 4), lopsided, 0.0, crowded).makespan;
  CHECK(makespan >= 160.0);
  CHECK(makespan < 160.2);
  // One copy of each rank per core: rank 1 keeps a whole core, as the host's balance gives it.
  const SharedCores spread{2, 2, 0, {BoundCores{1, {0, 1}}, BoundCores{1, {0, 1}}}};
  CHECK(simulate(gpipe(2, 4), lopsided, 0.0, spread).makespan < 80.2);
}

TEST_CASE("bound cores: a rank goes at its slowest copy's speed", "[pipeline][simulate][shared]") {
  // Rank 0 alone on core 0 with a copy of rank 1; rank 1's other copy alone on core 1.
  const SharedCores sharing{0, 1, 0.25, {BoundCores{1, {0, 1}}, BoundCores{1, {1}}}};
  CHECK(sharing.speeds({true, true}) == std::vector<double>{0.5, 0.5});
  CHECK(sharing.speeds({true, false})[0] == Approx(1 / 1.25));  // beside a waiting copy of rank 1
  CHECK(sharing.speeds({false, true})[1] == Approx(1 / 1.25));  // its copy on core 0 shares with a waiter
  // Two cores for a group of three: no rank beyond a whole core.
  const SharedCores wide{0, 1, 0, {BoundCores{2, {0, 1, 1}}}};
  CHECK(wide.speeds({true, false}) == std::vector<double>{1.0, 1.0});
  CHECK(wide.speeds({true, true})[0] == Approx(2.0 / 3));
}

TEST_CASE("shared cores: a bad sharing is refused, naming it", "[pipeline][simulate][shared]") {
  CHECK(contains(message_of<trident::InvalidArgument>([] {
                   simulate(
                       gpipe(2, 2), [](int, const Action&) { return 1.0; }, 0.0, SharedCores{2, 1, 1.5, {}});
                 }),
                 "waiting share in [0, 1], got 2, 1, 1.5"));
  CHECK(contains(message_of<trident::InvalidArgument>([] {
                   simulate(
                       gpipe(2, 2), [](int, const Action&) { return 1.0; }, 0.0, SharedCores{2, 0, 0, {}});
                 }),
                 "copies > 0"));
  CHECK(contains(message_of<trident::InvalidArgument>([] {
                   simulate(
                       gpipe(2, 2), [](int, const Action&) { return 1.0; }, 0.0,
                       SharedCores{2, 1, 0, {BoundCores{1, {0, 2}}}});
                 }),
                 "a rank bound to cores is 2, outside the schedule's 2 ranks"));
  CHECK(contains(message_of<trident::InvalidArgument>([] {
                   simulate(
                       gpipe(2, 2), [](int, const Action&) { return 1.0; }, 0.0,
                       SharedCores{2, 1, 0, {BoundCores{0, {0, 1}}}});
                 }),
                 "bound cores need at least one core, got 0"));
  CHECK(contains(message_of<trident::InvalidArgument>([] {
                   simulate(
                       gpipe(3, 2), [](int, const Action&) { return 1.0; }, 0.0,
                       SharedCores{2, 1, 0, {BoundCores{1, {0}}, BoundCores{1, {2}}}});
                 }),
                 "rank 1 is bound to no cores"));
}
