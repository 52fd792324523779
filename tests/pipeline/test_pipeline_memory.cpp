// Activation memory of pipeline stages, measured by their pools: a stage keeps as many
// micro-batches as its schedule has in flight (1F1B p - r on rank r, GPipe m), and activation
// recomputation keeps only each top-level layer's input, for the same numbers.

#include "gpt2_pipeline_helpers.hpp"

#include <trident/nn/model.hpp>
#include <trident/pipeline/activation_memory.hpp>
#include <trident/pipeline/executor.hpp>
#include <trident/pipeline/schedules.hpp>

#include <memory>

using namespace pipeline_gpt2_test;

namespace {

// One Trainer step of schedule `name` (interleaved: 2 chunks per rank), the whole world one
// pipeline; the Trainer, for inspection.
std::unique_ptr<Trainer> run_step(const std::string& name, bool recompute) {
  const int m = micro_batches_for(trident_test::world_size());
  auto trainer = std::make_unique<Trainer>(
      world(), spec(), pipeline_layout({name, name == "interleaved" ? 2 : 1}, {}, recompute), settings_with(5));
  perturb(*trainer);
  trainer->step(batch_of(data_for(2, m)), 1e-3);
  return trainer;
}

// The most micro-batches this rank's two chunks hold together after any action of an
// interleaved step. The Trainer's executor is const to its callers and takes no after-action
// hook, so this runs the pieces the Trainer is made of: an nn::Model per stage of GPT-2's spec
// on a pipeline::Executor.
int interleaved_rank_peak(const trident::pipeline::Schedule& schedule) {
  const int p = trident_test::world_size(), rank = trident_test::world_rank(), m = schedule.micro_batches;
  const auto stages = trident::nn::even_stages(config.layers + 2, schedule.stages());
  const auto data = batch_of(data_for(2, m));
  std::vector<Chunk::matrix> inputs;
  std::vector<Chunk::targets_type> targets;
  for (int k = 0; k < m; ++k) {
    const std::pair<std::int64_t, std::int64_t> rows{k * batch * seq, (k + 1) * batch * seq};
    inputs.push_back(Kokkos::subview(data.inputs, rows, Kokkos::ALL));
    targets.push_back({{}, Kokkos::subview(data.targets.classes, rows)});
  }
  std::vector<std::unique_ptr<Chunk>> chunks;
  std::vector<Chunk*> pointers;
  for (int c = 0; c < schedule.chunks; ++c) {
    chunks.push_back(std::make_unique<Chunk>(Space(), spec(), Chunk::group_type::single(),
                                             stages[static_cast<std::size_t>(c * p + rank)]));
    chunks.back()->initialize(5);
    chunks.back()->set_micro_batches(inputs, targets, 1.0 / (m * batch * seq));
    pointers.push_back(chunks.back().get());
  }
  trident::pipeline::Executor<float, Space> executor(Space(), world(), schedule, batch * seq, config.hidden);
  int peak = 0;
  executor.set_after_action([&](const trident::pipeline::Action&) {
    int held = 0;
    for (const Chunk* chunk : pointers) held += chunk->activation_statistics().in_use;
    peak = std::max(peak, held);
  });
  executor.run(pointers);
  return peak;
}

// GPT-2's blocks among a stage's top-level layers (0 is the embeddings, L + 1 the head).
int blocks_of(const trident::nn::StageRange& stage) {
  return std::min(stage.end, config.layers + 1) - std::max(stage.first, 1);
}

}  // namespace

TEST_CASE("the pool holds the micro-batches the schedule keeps in flight", "[pipeline][memory]") {
  const int p = trident_test::world_size(), m = micro_batches_for(p);
  // One rank with one stage runs no pipeline; the interleaved schedule below has two there.
  for (const std::string name : {"gpipe", "1f1b", "zb"}) {
    if (p == 1) break;
    const auto trainer = run_step(name, false);
    REQUIRE(trainer->executor() != nullptr);
    const int rank = trainer->mesh().pp_rank();
    INFO("schedule " << name << " p = " << p << " m = " << m << " rank " << rank);
    const auto& stats = trainer->chunk(0).activation_statistics();
    const auto freed_by = name == "zb" ? trident::pipeline::ActivationsFreedBy::backward_weight
                                       : trident::pipeline::ActivationsFreedBy::backward_input;
    CHECK(stats.peak_in_use == trident::pipeline::peak_activations(trainer->executor()->schedule(), freed_by)[rank]);
    CHECK(stats.slots == stats.peak_in_use);  // slots are reused, never more than needed
    CHECK(stats.in_use == 0);
    CHECK(stats.bytes_in_use == 0);
    if (name == "gpipe") CHECK(stats.peak_in_use == m);
    if (name == "1f1b") CHECK(stats.peak_in_use == std::min(p - rank, m));  // rank 0: p
    if (name != "zb") CHECK(stats.peak_bytes % static_cast<std::size_t>(stats.peak_in_use) == 0);
    // The executor's transfer buffers: a few, not one per micro-batch.
    if (name == "1f1b") CHECK(trainer->executor()->buffers() <= 6);
  }
  // Interleaved: the rank's chunks together hold what the schedule predicts, and each chunk
  // of the Trainer's step no more, and nothing once the step is done.
  const auto schedule = trident::pipeline::make_schedule("interleaved", p, m, 2);
  const int predicted = trident::pipeline::peak_activations(schedule)[trident_test::world_rank()];
  CHECK(interleaved_rank_peak(schedule) == predicted);
  const auto interleaved = run_step("interleaved", false);
  REQUIRE(interleaved->chunk_count() == 2);
  for (int c = 0; c < 2; ++c) {
    const auto& stats = interleaved->chunk(c).activation_statistics();
    CHECK(stats.peak_in_use >= 1);
    CHECK(stats.peak_in_use <= predicted);
    CHECK(stats.in_use == 0);
  }
}

TEST_CASE("recomputation keeps only layer inputs and gives the same numbers", "[pipeline][memory]") {
  const int p = trident_test::world_size();
  for (const std::string name : {"1f1b", "zb", "gpipe"}) {
    INFO("schedule " << name << " p = " << p);
    const auto kept = run_step(name, false), recomputed = run_step(name, true);
    for (int c = 0; c < kept->chunk_count(); ++c) {
      CHECK(host_copy(kept->chunk(c).parameters().grads()) == host_copy(recomputed->chunk(c).parameters().grads()));
      const auto& full = kept->chunk(c).activation_statistics();
      const auto& small = recomputed->chunk(c).activation_statistics();
      CHECK(small.peak_in_use == full.peak_in_use);
      CHECK(small.peak_bytes < full.peak_bytes);
      if (name != "1f1b") continue;
      // A micro-batch keeps the stage input (the first stage: the embeddings' output) and each
      // block's output, and on the last stage the final norm with its mean and 1/std, the
      // logits and the losses; its tokens and targets are the Trainer's batch.
      const auto& chunk = recomputed->chunk(c);
      const std::size_t n = batch * seq, ch = config.hidden;
      std::size_t bytes = (1 + static_cast<std::size_t>(blocks_of(chunk.stage()))) * n * ch * sizeof(float);
      if (chunk.is_last_stage()) bytes += (n * ch + 3 * n + n * static_cast<std::size_t>(config.vocab)) * sizeof(float);
      INFO("chunk " << c << " of layers [" << chunk.stage().first << ", " << chunk.stage().end << ")");
      CHECK(small.peak_bytes == bytes * static_cast<std::size_t>(small.peak_in_use));
    }
  }
}
