// The parts of data parallelism on their own: shard ranges, buckets, unit plans, the memory
// ledger, storage backing in the ParameterStore, AdamW on a range that cuts tensors, and the
// checks that stop every rank together (a replica that differs, batches that do not split).

#include "data_parallel_test_helpers.hpp"

#include <trident/core/memory_accounting.hpp>
#include <trident/core/parameter_store.hpp>
#include <trident/data_parallel/buckets.hpp>
#include <trident/data_parallel/shard_layout.hpp>
#include <trident/data_parallel/sharded_adamw.hpp>
#include <trident/data_parallel/unit_plan.hpp>
#include <trident/nn/model.hpp>
#include <trident/optim/adamw.hpp>

#include <cmath>
#include <string>
#include <vector>

namespace {

using namespace trident_test;
using Memory = Space::memory_space;
using Store = trident::ParameterStore<float, Memory>;
using trident::data_parallel::ShardLayout;
using trident::data_parallel::UnitPlan;

// Three units: "a" (unit 0), "b" and "c" (unit 1), "d" (unit 2, which also reads "a").
Store small_store() {
  Store store;
  store.declare("a", {3, 4}, true);
  store.declare("b", {5}, false);
  store.declare("c", {2, 3}, true);
  store.declare("d", {7}, false);
  store.allocate();
  return store;
}

int unit_of_small(const std::string& name) {
  return name == "a" ? 0 : name == "d" ? 2 : 1;
}

std::vector<float> to_host(const Kokkos::View<float*, Kokkos::LayoutRight, Memory>& view) {
  auto host = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), view);
  return std::vector<float>(host.data(), host.data() + host.size());
}

}  // namespace

TEST_CASE("shards are contiguous ranks-ordered ranges, uneven by at most one element", "[data_parallel][shards]") {
  const ShardLayout layout(10, 4);
  CHECK(std::vector<std::int64_t>{layout.size(0), layout.size(1), layout.size(2), layout.size(3)} ==
        std::vector<std::int64_t>{3, 3, 2, 2});
  CHECK(layout.begin(0) == 0);
  CHECK(layout.begin(2) == 6);
  CHECK(layout.end(3) == 10);
  CHECK(layout.counts_within(2, 7) == std::vector<int>{1, 3, 1, 0});
  CHECK(layout.part(1, 2, 7) == std::make_pair(std::int64_t{3}, std::int64_t{6}));
  CHECK(layout.part(3, 2, 7) == std::make_pair(std::int64_t{8}, std::int64_t{8}));  // empty, at its own begin
  const ShardLayout tiny(2, 4);  // fewer elements than ranks: some shards are empty
  CHECK(tiny.counts_within(0, 2) == std::vector<int>{1, 1, 0, 0});
  CHECK_THROWS_AS(ShardLayout(5, 0), trident::InvalidArgument);
}

TEST_CASE("buckets are contiguous, whole tensors, in backward order", "[data_parallel][buckets]") {
  const auto store = small_store();
  const UnitPlan plan(store, 3, unit_of_small, {{2, "a"}});
  // A 24-byte cap (6 floats): d (7) alone, then c (6), then b + a (5 + 12).
  const auto buckets = trident::data_parallel::make_gradient_buckets(store.tensors(), plan, 24, sizeof(float));
  REQUIRE(buckets.size() == 3);
  CHECK(buckets[0].range.first == 3);
  CHECK(buckets[0].range.begin == 23);
  CHECK(buckets[0].range.end == 30);
  CHECK(buckets[0].units == std::vector<int>{2});
  CHECK(buckets[1].range.first == 2);
  CHECK(buckets[1].range.last == 3);
  CHECK(buckets[2].range.first == 0);
  CHECK(buckets[2].range.last == 2);
  CHECK(buckets[2].range.begin == 0);
  CHECK(buckets[2].range.end == 17);
  CHECK(buckets[2].units == std::vector<int>{0, 1});
  const auto one = trident::data_parallel::make_gradient_buckets(store.tensors(), plan, 1 << 20, sizeof(float));
  REQUIRE(one.size() == 1);
  CHECK(one[0].range.size() == store.size());
}

TEST_CASE("a unit plan finds each unit's range and what it reads", "[data_parallel][units]") {
  const auto store = small_store();
  const UnitPlan plan(store, 3, unit_of_small, {{2, "a"}});
  CHECK(plan.owned(1).first == 1);
  CHECK(plan.owned(1).last == 3);
  CHECK(plan.owned(1).begin == 12);
  CHECK(plan.owned(1).end == 23);
  REQUIRE(plan.reads(2).size() == 2);
  CHECK(plan.reads(2)[1].first == 0);
  CHECK(plan.reads(2)[1].size() == 12);
  CHECK(plan.unit_of_tensor(3) == 2);
  CHECK_THROWS_WITH(UnitPlan(store, 3, [](const std::string& n) { return n == "c" ? 0 : 1; }),
                    Catch::Contains("the tensors of unit 1 are not contiguous"));
  CHECK_THROWS_WITH(UnitPlan(store, 2, unit_of_small), Catch::Contains("'d' is in unit 2, outside [0, 2)"));
  CHECK_THROWS_WITH(UnitPlan(store, 3, unit_of_small, {{2, "e"}}), Catch::Contains("reads 'e', which the store lacks"));

  // GPT-2's spec (what the Trainer's engine reduces by): embedding, blocks, head; the head
  // reads wte.
  const auto config = even_config();
  const trident::nn::Model<float, Space> model(Space(), trident::gpt2::gpt2_spec(config));
  const auto gpt2 = model.unit_plan();
  CHECK(gpt2.unit_count() == config.layers + 2);
  CHECK(gpt2.owned(0).size() == (config.vocab + config.seq) * config.hidden);
  CHECK(gpt2.owned(1).size() == 12 * config.hidden * config.hidden + 13 * config.hidden);
  CHECK(gpt2.owned(config.layers + 1).size() == 2 * config.hidden);
  REQUIRE(gpt2.reads(config.layers + 1).size() == 2);
  CHECK(gpt2.reads(config.layers + 1)[1].first == 0);  // wte, the embedding's first tensor
  CHECK(gpt2.reads(config.layers + 1)[1].size() == config.vocab * config.hidden);
}

TEST_CASE("the memory ledger counts held bytes by category and the peak", "[data_parallel][memory]") {
  using trident::MemoryCategory;
  trident::MemoryLedger ledger;
  ledger.add(MemoryCategory::parameters, 100);
  {
    trident::TrackedView<Kokkos::View<float*, Memory>> buffer(ledger, MemoryCategory::communication,
                                                              Kokkos::View<float*, Memory>("buffer", 25));
    CHECK(ledger.held(MemoryCategory::communication) == 100);
    CHECK(ledger.held_total() == 200);
  }
  CHECK(ledger.held(MemoryCategory::communication) == 0);
  CHECK(ledger.peak(MemoryCategory::communication) == 100);
  CHECK(ledger.peak_total() == 200);
  ledger.set(MemoryCategory::activations, 40);
  ledger.set(MemoryCategory::activations, 10);
  CHECK(ledger.held(MemoryCategory::activations) == 10);
  CHECK(ledger.peak_total() == 200);
  ledger.reset_peaks();
  CHECK(ledger.peak_total() == 110);
  CHECK_THROWS_AS(ledger.release(MemoryCategory::gradients, 1), trident::Error);
  const auto report = trident::memory_report(ledger, "memory");
  CHECK(report.find("optimizer_state") != std::string::npos);
  CHECK(trident::memory_report_json(ledger).find("\"parameters\":{\"held\":100,\"peak\":100}") != std::string::npos);
}

TEST_CASE("a store's tensors can live in storage other than its flat buffers", "[data_parallel][store]") {
  auto store = small_store();
  Kokkos::View<float*, Kokkos::LayoutRight, Memory> unit("unit", 11);  // b and c
  store.back_values(1, 3, unit);
  CHECK(store.vector("b").data() == unit.data());
  CHECK(store.matrix("c").data() == unit.data() + 5);
  CHECK(store.vector("d").data() == store.values().data() + 23);
  CHECK_THROWS_WITH(store.back_values(1, 3, Kokkos::View<float*, Kokkos::LayoutRight, Memory>("short", 10)),
                    Catch::Contains("hold 11 elements but the storage has 10"));
  store.back_values(1, 3, {});
  CHECK(store.vector("b").data() == store.values().data() + 12);
  store.set_grads({});
  CHECK(store.grads().extent(0) == 0);
  CHECK_THROWS_WITH(store.grad_vector("a"), Catch::Contains("'a' has no storage"));
  store.back_grads(0, 1, Kokkos::View<float*, Kokkos::LayoutRight, Memory>("a_grad", 12));
  CHECK(store.grad_matrix("a").extent(1) == 4);
  CHECK_THROWS_WITH(store.set_values(Kokkos::View<float*, Kokkos::LayoutRight, Memory>("wrong", 3)),
                    Catch::Contains("a view of 3 elements cannot hold the 30 elements"));
}

TEST_CASE("AdamW on a range that cuts through tensors is the full AdamW on that range", "[data_parallel][adamw]") {
  const auto store = small_store();
  // Copies even where the store is host memory: `host` keeps the initial values.
  auto host = Kokkos::create_mirror(store.values());
  auto grads = Kokkos::create_mirror(store.grads());
  for (std::int64_t i = 0; i < store.size(); ++i) {
    host(i) = 0.1f * static_cast<float>(i % 7) - 0.3f;
    grads(i) = 0.05f * static_cast<float>(i % 5) - 0.1f;
  }
  Kokkos::deep_copy(store.values(), host);
  Kokkos::deep_copy(store.grads(), grads);
  const auto initial = to_host(store.values());
  trident::optim::AdamWSettings settings;
  settings.weight_decay = 0.5;
  trident::optim::AdamW<float, Memory> full(store, settings);
  for (int step = 1; step <= 3; ++step) full.step(Space(), store, step, 1e-2);
  const auto expected = to_host(store.values());

  // Elements [10, 25): the end of a (decayed), b, c (decayed) and the start of d.
  Kokkos::deep_copy(store.values(), host);  // back to the initial values
  trident::MemoryLedger ledger;
  trident::data_parallel::ShardedAdamW<float, Memory> shard(store.tensors(), 10, 25, settings, ledger);
  CHECK(ledger.held(trident::MemoryCategory::optimizer_state) == 2 * 15 * 4);
  const auto range = std::make_pair(std::int64_t{10}, std::int64_t{25});
  for (int step = 1; step <= 3; ++step)
    shard.step(Space(), Kokkos::subview(store.values(), range), Kokkos::subview(store.grads(), range), step, 1e-2);
  const auto actual = to_host(store.values());
  for (std::int64_t i = 0; i < store.size(); ++i) {
    INFO("element " << i);
    CHECK(actual[static_cast<std::size_t>(i)] ==
          (i >= 10 && i < 25 ? expected[static_cast<std::size_t>(i)] : initial[static_cast<std::size_t>(i)]));
  }
}

// One replica per rank, micro-batches of one sequence: valid at every world size.
trident::train::Layout one_row_each(int zero_stage = 0) {
  auto layout = layout_for(world_size(), zero_stage);
  layout.micro_batch = 1;
  return layout;
}

trident::nn::ModelSpec spec_of(const trident::gpt2::Gpt2Config& config) {
  return trident::gpt2::gpt2_spec(config);
}

// Sequences [first, first + count) of the loader's first batch, as a replica's share.
Trainer::batch_type share(const trident::data::BatchLoader& data, std::int64_t first, std::int64_t count) {
  return trident::gpt2::gpt2_token_batch<float, Space>(data.batch(0, first, count), true);
}

TEST_CASE("a replica with another model stops every rank with one error", "[data_parallel][consistency]") {
  const int rank = world_rank(), size = world_size();
  // Every rank agrees: training starts.
  CHECK_NOTHROW(Trainer(world(), spec_of(even_config()), one_row_each(1), settings()));
  if (size == 1) return;

  auto config = even_config();
  if (rank == 1) config.layers = 3;
  try {
    Trainer trainer(world(), spec_of(config), one_row_each(1), settings());
    FAIL("a rank with another model did not stop the group");
  } catch (const trident::InvalidArgument& e) {
    const std::string message = e.what();
    CHECK_THAT(message, Catch::Contains("hold different models: rank(s) 1 differ from rank 0"));
    CHECK_THAT(message, Catch::Contains("rank 1: 40 tensors"));
  }

  // Same model, another ZeRO stage on the last rank.
  try {
    Trainer trainer(world(), spec_of(even_config()), one_row_each(rank == size - 1 ? 2 : 1), settings());
    FAIL("a rank with another ZeRO stage did not stop the group");
  } catch (const trident::InvalidArgument& e) {
    CHECK_THAT(std::string(e.what()),
               Catch::Contains("disagree on their settings: rank(s) " + std::to_string(size - 1)));
  }
}

TEST_CASE("batches that do not split into whole micro-batches stop every rank", "[data_parallel][settings]") {
  const int size = world_size(), rank = world_rank();
  const auto config = even_config();
  CHECK_THROWS_WITH(Trainer(world(), spec_of(config), one_row_each(7), settings()),
                    Catch::Contains("the ZeRO stage is 0, 1, 2 or 3, got 7"));
  trident::data::SyntheticMarkovLanguage language(config.vocab, 3, 11);
  const trident::data::BatchLoader data(language.generate(1 << 14), 4 * size + 1, config.seq);

  // Each replica's 4 sequences are not whole micro-batches of 3.
  auto layout = one_row_each();
  layout.micro_batch = 3;
  Trainer threes(world(), spec_of(config), layout, settings());
  CHECK_THROWS_WITH(threes.step(share(data, 4 * rank, 4), 1e-3),
                    Catch::Contains("each replica's 4 samples do not make whole micro-batches of 3 samples"));
  CHECK(threes.steps_done() == 0);

  Trainer trainer(world(), spec_of(config), one_row_each(), settings());
  const Tensors initial = trainer.global_parameters();
  if (size > 1) {
    // A global batch of 4N + 1 sequences does not split over N replicas.
    CHECK_THROWS_WITH(trainer.step(trident::gpt2::gpt2_token_batch<float, Space>(data.batch(0), false), 1e-3),
                      Catch::Contains("the batch of " + std::to_string(4 * size + 1) + " samples does not split over " +
                                      std::to_string(size) + " data-parallel replicas"));
    CHECK(trainer.steps_done() == 0);
    CHECK(trainer.global_parameters() == initial);
    // Only rank 0's share is wrong (micro-batches of 2): it names its error, the others name rank 0.
    auto pairs = one_row_each();
    pairs.micro_batch = 2;
    Trainer mixed(world(), spec_of(config), pairs, settings());
    try {
      mixed.step(share(data, 4 * rank, rank == 0 ? 3 : 4), 1e-3);
      FAIL("a rank with a bad batch did not stop the group");
    } catch (const std::exception& e) {
      CHECK_THAT(std::string(e.what()),
                 Catch::Contains(rank == 0 ? "each replica's 3 samples do not make whole micro-batches of 2"
                                           : "failed on rank(s) 0"));
    }
    CHECK(mixed.steps_done() == 0);
  }
  // After a refused step the trainer still takes a good one.
  const auto report = trainer.step(share(data, 4 * rank, 4), 1e-3);
  CHECK(report.step == 1);
  CHECK(report.loss == Approx(std::log(config.vocab)).epsilon(0.05));  // an untrained model guesses uniformly
  CHECK(trainer.steps_done() == 1);
  CHECK(trainer.samples_seen() == 4 * size);
  CHECK(trainer.global_parameters() != initial);
}
