// Pipeline-parallel GPT-2 against the one-rank model: for every schedule, one step of m
// micro-batches gives the one-rank loss and every parameter gradient, wte's two copies carry
// the same whole gradient, and the gradient norm counts every tensor once.

#include "gpt2_pipeline_helpers.hpp"

#include <trident/gpt2/checkpoint.hpp>
#include <trident/pipeline/activation_memory.hpp>
#include <trident/pipeline/measured_bubble.hpp>

#include <filesystem>

using namespace pipeline_gpt2_test;

namespace {

// Builds the pipeline of `plan`, loaded like the one-rank model, and compares one step.
void compare_one_step(const trident::gpt2::Gpt2PipelinePlan& plan, bool recompute = false) {
  const int m = plan.schedule.micro_batches;
  const double scale = 1.0 / (m * batch * seq);
  const auto data = data_for(1, m);

  Model one(Space(), config);
  one.initialize(7);
  perturb(one.parameters());
  one.zero_grad();
  const double one_loss = one_rank_step(one, data, scale);

  Pipeline pipe(Space(), config, plan, world(), batch, seq, Model::group_type::single(), recompute);
  pipe.initialize(7);
  for (int c = 0; c < pipe.chunk_count(); ++c) perturb(pipe.chunk(c).parameters());
  pipe.zero_grad();
  const double loss = pipe.forward_backward(data.tokens, data.targets, scale);
  CHECK(trident_test::relative_difference(loss, one_loss) < 1e-5);

  for (int c = 0; c < pipe.chunk_count(); ++c) {
    std::string name;
    const double worst = worst_gradient_difference(pipe.chunk(c), one, &name);
    INFO("chunk " << c << ", worst tensor " << name);
    CHECK(worst < 1e-5);
  }
  const auto [first, last] = wte_copies(pipe, true);
  CHECK(first == last);  // bit for bit: both copies hold the summed gradient
  const double one_norm = trident::optim::sum_of_squares(Space(), one.parameters().grads());
  CHECK(trident_test::relative_difference(pipe.grad_norm_squared(), one_norm) < 1e-5);
}

}  // namespace

TEST_CASE("each stage initialises exactly its tensors of the one-rank model", "[pipeline][gpt2]") {
  const int p = trident_test::world_size();
  const auto plan = trident::gpt2::plan_gpt2_pipeline(config, "1f1b", p, micro_batches_for(p));
  Model one(Space(), config);
  one.initialize(3);
  Pipeline pipe(Space(), config, plan, world(), batch, seq);
  pipe.initialize(3);
  const auto one_values = host_copy(one.parameters().values());
  for (int c = 0; c < pipe.chunk_count(); ++c) {
    const auto& model = pipe.chunk(c);
    const auto values = host_copy(model.parameters().values());
    int mismatched = 0;
    for (const auto& t : model.parameters().tensors()) {
      const auto expected = slice_of(one, one_values, t);
      mismatched += !std::equal(expected.begin(), expected.end(), values.begin() + t.offset);
    }
    CHECK(mismatched == 0);
    // Only the stage's tensors, under their global names.
    const auto& stage = model.stage();
    CHECK(model.parameters().contains("wpe.weight") == stage.holds_embedding);
    CHECK(model.parameters().contains("ln_f.weight") == stage.holds_head);
    CHECK(model.parameters().contains("wte.weight") == (stage.holds_embedding || stage.holds_head));
    CHECK(model.parameters().contains(trident::gpt2::layer_name(stage.first_block, "ln_1.weight")));
    CHECK(!model.parameters().contains(trident::gpt2::layer_name(stage.end_block % config.layers, "ln_1.weight")) ==
          (p > 1));
  }
  const auto [first, last] = wte_copies(pipe, false);
  CHECK(first == last);
}

TEST_CASE("one step of every schedule equals the one-rank step", "[pipeline][gpt2]") {
  const int p = trident_test::world_size();
  for (const auto& s : schedule_cases()) {
    INFO("schedule " << s.name << " p = " << p << " v = " << s.chunks);
    const auto plan = trident::gpt2::plan_gpt2_pipeline(config, s.name, p, micro_batches_for(p), s.chunks);
    compare_one_step(plan);
  }
}

TEST_CASE("an uneven explicit split and fewer micro-batches than ranks", "[pipeline][gpt2]") {
  const int p = trident_test::world_size();
  if (p == 3) {
    for (const std::string name : {"1f1b", "zb", "gpipe"}) {
      INFO("schedule " << name << " with stages 2,4,2");
      compare_one_step(trident::gpt2::plan_gpt2_pipeline(config, name, 3, 5, 1, "2,4,2"));
    }
    INFO("interleaved with stages 1,2,1,2,1,1");
    compare_one_step(trident::gpt2::plan_gpt2_pipeline(config, "interleaved", 3, 6, 2, "1,2,1,2,1,1"));
  }
  if (p >= 2) {  // m < p: 1F1B turns into GPipe
    INFO("1f1b with m = 1");
    compare_one_step(trident::gpt2::plan_gpt2_pipeline(config, "1f1b", p, 1));
  }
  // The cost estimate gives the head's stage no fewer blocks than it can carry: costs balance.
  const auto costs = trident::gpt2::gpt2_part_costs(config, seq);
  const auto plan = trident::gpt2::plan_gpt2_pipeline(config, "1f1b", 3, 3);
  std::vector<int> blocks;
  for (const auto& stage : plan.stages) blocks.push_back(stage.blocks());
  CHECK(blocks == std::vector<int>{3, 3, 2});
  CHECK(costs.head == config.vocab * config.hidden + config.hidden);
}

TEST_CASE("a step with activation recomputation gives the same numbers", "[pipeline][gpt2]") {
  const int p = trident_test::world_size();
  for (const auto& s : schedule_cases()) {
    INFO("schedule " << s.name << " p = " << p);
    compare_one_step(trident::gpt2::plan_gpt2_pipeline(config, s.name, p, micro_batches_for(p), s.chunks), true);
  }
}

TEST_CASE("the executor traces every action of every rank", "[pipeline][gpt2]") {
  const int p = trident_test::world_size();
  const auto plan = trident::gpt2::plan_gpt2_pipeline(config, "zb", p, micro_batches_for(p));
  Pipeline pipe(Space(), config, plan, world(), batch, seq);
  pipe.initialize(1);
  const auto data = data_for(0, plan.schedule.micro_batches);
  pipe.forward_backward(data.tokens, data.targets, 1.0);
  const auto& mine = pipe.executor().trace();
  const auto& list = plan.schedule.actions_of(trident_test::world_rank());
  REQUIRE(mine.size() == list.size());
  double previous_end = 0;
  int disordered = 0;
  for (const auto& e : mine) {
    CHECK(e.end_us >= e.start_us);
    if (trident::pipeline::is_compute_category(e.category)) {
      disordered += e.start_us < previous_end;  // one pass at a time, in list order
      previous_end = e.end_us;
    }
  }
  CHECK(disordered == 0);
  const auto all = pipe.executor().gather_trace();
  std::size_t expected = 0;
  for (int r = 0; r < p; ++r) expected += plan.schedule.actions_of(r).size();
  CHECK(all.size() == expected);
  const auto bubble = trident::pipeline::measure_bubble(all, p);
  for (double b : bubble.bubble) CHECK((b >= 0 && b < 1));
  CHECK(trident::pipeline::chrome_trace(all)["traceEvents"].size() == expected + 2 * static_cast<std::size_t>(p));
}

TEST_CASE("each stage loads its tensors from a one-rank checkpoint", "[pipeline][gpt2]") {
  const int p = trident_test::world_size();
  const std::string path =
      (std::filesystem::temp_directory_path() /
       ("trident_pipeline_stage_load_np" + std::to_string(p) + ".safetensors"))
          .string();
  Model one(Space(), config);
  one.initialize(11);
  perturb(one.parameters());
  AdamW one_adamw(one.parameters(), {});
  if (trident_test::world_rank() == 0)
    trident::gpt2::save_gpt2_checkpoint(path, config, one.parameters(), one_adamw, {4, 100, 11});
  MPI_Barrier(MPI_COMM_WORLD);
  const auto plan = trident::gpt2::plan_gpt2_pipeline(config, "interleaved", p, micro_batches_for(p), 2);
  Pipeline pipe(Space(), config, plan, world(), batch, seq);
  const auto one_values = host_copy(one.parameters().values());
  for (int c = 0; c < pipe.chunk_count(); ++c) {
    auto& model = pipe.chunk(c);
    AdamW adamw(model.parameters(), {});
    CHECK(trident::gpt2::load_gpt2_checkpoint(path, config, model.parameters(), adamw).step == 4);
    const auto values = host_copy(model.parameters().values());
    int mismatched = 0;
    for (const auto& t : model.parameters().tensors()) {
      const auto expected = slice_of(one, one_values, t);
      mismatched += !std::equal(expected.begin(), expected.end(), values.begin() + t.offset);
    }
    CHECK(mismatched == 0);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  if (trident_test::world_rank() == 0) std::filesystem::remove(path);
}
