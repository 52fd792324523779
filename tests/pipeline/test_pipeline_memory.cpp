// Activation memory of pipeline stages, measured by their pools: a stage keeps as many
// micro-batches as its schedule has in flight (1F1B p - r on rank r, GPipe m), and activation
// recomputation keeps only each block's input, for the same numbers.

#include "gpt2_pipeline_helpers.hpp"

#include <trident/pipeline/activation_memory.hpp>

using namespace pipeline_gpt2_test;

namespace {

// One step of `name` at p = world size; returns the pipeline for inspection. With
// `rank_peak`, the most micro-batches this rank's chunks held together after any action.
std::unique_ptr<Pipeline> run_step(const std::string& name, bool recompute, int* rank_peak = nullptr) {
  const int p = trident_test::world_size(), m = micro_batches_for(p);
  const auto plan = trident::gpt2::plan_gpt2_pipeline(config, name, p, m, name == "interleaved" ? 2 : 1);
  auto pipe =
      std::make_unique<Pipeline>(Space(), config, plan, world(), batch, seq, Model::group_type::single(), recompute);
  if (rank_peak != nullptr) {
    Pipeline* raw = pipe.get();
    pipe->executor().set_after_action([raw, rank_peak](const trident::pipeline::Action&) {
      int held = 0;
      for (int c = 0; c < raw->chunk_count(); ++c) held += raw->chunk(c).activation_statistics().in_use;
      *rank_peak = std::max(*rank_peak, held);
    });
  }
  pipe->initialize(5);
  for (int c = 0; c < pipe->chunk_count(); ++c) perturb(pipe->chunk(c).parameters());
  pipe->zero_grad();
  const auto data = data_for(2, m);
  pipe->forward_backward(data.tokens, data.targets, 1.0 / (m * batch * seq));
  return pipe;
}

}  // namespace

TEST_CASE("the pool holds the micro-batches the schedule keeps in flight", "[pipeline][memory]") {
  const int p = trident_test::world_size(), rank = trident_test::world_rank(), m = micro_batches_for(p);
  for (const std::string name : {"gpipe", "1f1b", "zb"}) {
    INFO("schedule " << name << " p = " << p << " m = " << m << " rank " << rank);
    const auto pipe = run_step(name, false);
    const auto& stats = pipe->chunk(0).activation_statistics();
    const auto freed_by = name == "zb" ? trident::pipeline::ActivationsFreedBy::backward_weight
                                       : trident::pipeline::ActivationsFreedBy::backward_input;
    CHECK(stats.peak_in_use == trident::pipeline::peak_activations(pipe->schedule(), freed_by)[rank]);
    CHECK(stats.slots == stats.peak_in_use);  // slots are reused, never more than needed
    CHECK(stats.in_use == 0);
    CHECK(stats.bytes_in_use == 0);
    if (name == "gpipe") CHECK(stats.peak_in_use == m);
    if (name == "1f1b") CHECK(stats.peak_in_use == std::min(p - rank, m));  // rank 0: p
    if (name != "zb") CHECK(stats.peak_bytes % static_cast<std::size_t>(stats.peak_in_use) == 0);
  }
  // Interleaved: the rank's chunks together hold what the schedule predicts.
  int rank_peak = 0;
  const auto interleaved = run_step("interleaved", false, &rank_peak);
  CHECK(rank_peak == trident::pipeline::peak_activations(interleaved->schedule())[rank]);
  // The executor's transfer buffers: a few, not one per micro-batch.
  const auto pipe = run_step("1f1b", false);
  CHECK(pipe->executor().buffers() <= static_cast<std::size_t>(p > 1 ? 6 : 0));
}

TEST_CASE("recomputation keeps only block inputs and gives the same numbers", "[pipeline][memory]") {
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
      // logits and the losses; its tokens and targets are the model's, set for the step.
      const auto& stage = recomputed->chunk(c).stage();
      const std::size_t n = batch * seq, ch = config.hidden;
      std::size_t bytes = (1 + static_cast<std::size_t>(stage.blocks())) * n * ch * sizeof(float);
      if (stage.holds_head) bytes += (n * ch + 3 * n + n * static_cast<std::size_t>(config.vocab)) * sizeof(float);
      CHECK(small.peak_bytes == bytes * static_cast<std::size_t>(small.peak_in_use));
    }
  }
}
