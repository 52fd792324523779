// Pipeline-parallel GPT-2 on train::Trainer against the one-rank model: for every schedule, one
// step of m micro-batches gives the one-rank loss and every parameter gradient, wte's two
// copies carry the same whole gradient, and the gradient norm counts every tensor once.

#include "gpt2_pipeline_helpers.hpp"

#include <trident/pipeline/measured_bubble.hpp>
#include <trident/pipeline/trace.hpp>

#include <filesystem>
#include <fstream>
#include <iterator>

using namespace pipeline_gpt2_test;

namespace {

// One step of m micro-batches in `layout` against the one-rank step on the same parameters.
void compare_one_step(const trident::train::Layout& layout, int m) {
  const double scale = 1.0 / (m * batch * seq);
  const auto data = data_for(1, m);

  Model one(Space(), config);
  one.initialize(7);
  perturb(one.parameters());
  one.zero_grad();
  const double one_loss = one_rank_step(one, data, scale) * scale;

  Trainer trainer(world(), spec(), layout, settings_with(7));
  perturb(trainer);
  const auto report = trainer.step(batch_of(data), 1e-3);
  // The step ran the schedule asked for, on m micro-batches (one rank, one stage: no pipeline).
  REQUIRE((trainer.executor() != nullptr) == (layout.stages() > 1));
  if (trainer.executor() != nullptr) {
    CHECK(trainer.executor()->schedule().micro_batches == m);
    CHECK(trainer.executor()->schedule().chunks == layout.virtual_stages);
  }
  CHECK(trident_test::relative_difference(report.loss, one_loss) < 1e-5);

  for (int c = 0; c < trainer.chunk_count(); ++c) {
    std::string name;
    const double worst = worst_gradient_difference(trainer.chunk(c).parameters(), one.parameters(), &name);
    INFO("chunk " << c << ", worst tensor " << name);
    CHECK(worst < 1e-5);
  }
  const auto [first, last] = wte_copies(trainer, true);
  CHECK(first.empty() == (layout.stages() == 1));  // one stage holds one wte
  CHECK(first == last);                            // bit for bit: both copies hold the summed gradient
  const double one_norm = trident::optim::sum_of_squares(Space(), one.parameters().grads());
  CHECK(trident_test::relative_difference(report.grad_norm * report.grad_norm, one_norm) < 1e-5);
}

}  // namespace

TEST_CASE("each stage initialises exactly its tensors of the one-rank model", "[pipeline][gpt2]") {
  const int p = trident_test::world_size();
  Model one(Space(), config);
  one.initialize(3);
  Trainer trainer(world(), spec(), pipeline_layout({"1f1b", 1}), settings_with(3));
  const int layers = config.layers + 2;  // the embeddings, the blocks, the head
  // The stages tile the top-level layers in order; chunk c runs stage c * p + this rank.
  const auto& stages = trainer.stages();
  REQUIRE(static_cast<int>(stages.size()) == p);
  CHECK(stages.front().first == 0);
  CHECK(stages.back().end == layers);
  for (std::size_t s = 0; s + 1 < stages.size(); ++s) CHECK(stages[s].end == stages[s + 1].first);
  for (int c = 0; c < trainer.chunk_count(); ++c) {
    const auto& model = trainer.chunk(c);
    const auto& range = model.stage();
    const auto& planned = stages[static_cast<std::size_t>(c * p + trainer.mesh().pp_rank())];
    CHECK((range.first == planned.first && range.end == planned.end));
    CHECK(mismatched_values(model.parameters(), one.parameters()) == 0);
    // Only the stage's tensors, under their global names.
    const auto& store = model.parameters();
    CHECK(store.contains("wpe.weight") == (range.first == 0));
    CHECK(store.contains("ln_f.weight") == (range.end == layers));
    CHECK(store.contains("wte.weight") == (range.first == 0 || range.end == layers));
    int misplaced = 0;
    for (int l = 0; l < config.layers; ++l)
      misplaced +=
          store.contains(trident::gpt2::layer_name(l, "ln_1.weight")) != (l + 1 >= range.first && l + 1 < range.end);
    CHECK(misplaced == 0);
  }
  const auto [first, last] = wte_copies(trainer, false);
  CHECK(first == last);
  // Together the stages hold the one-rank model, each tensor once.
  const trident::comm::Communicator self(MPI_COMM_SELF, "self");
  CHECK(trainer.global_parameters() == trident::nn::global_tensors(one.layers(), trident::nn::Buffer::values, self));
}

TEST_CASE("one step of every schedule equals the one-rank step", "[pipeline][gpt2]") {
  const int p = trident_test::world_size();
  for (const auto& s : schedule_cases()) {
    INFO("schedule " << s.name << " p = " << p << " v = " << s.chunks);
    compare_one_step(pipeline_layout(s), micro_batches_for(p));
  }
}

TEST_CASE("an uneven explicit split and fewer micro-batches than ranks", "[pipeline][gpt2]") {
  const int p = trident_test::world_size();
  if (p == 3) {
    for (const std::string name : {"1f1b", "zb", "gpipe"}) {
      INFO("schedule " << name << " with blocks 2,4,2");
      compare_one_step(pipeline_layout({name, 1}, {2, 4, 2}), 5);
    }
    INFO("interleaved with blocks 1,2,1,2,1,1");
    compare_one_step(pipeline_layout({"interleaved", 2}, {1, 2, 1, 2, 1, 1}), 6);
  }
  if (p >= 2) {  // m < p: 1F1B turns into GPipe
    INFO("1f1b with m = 1");
    compare_one_step(pipeline_layout({"1f1b", 1}), 1);
  }
  // The cost estimate (the head V C + C, a block about 12 C^2 + 2 T C) gives the head's stage
  // no fewer blocks than it can carry: the embeddings and blocks 0-2, blocks 3-5, blocks 6-7
  // and the head.
  const auto gpt2 = spec();
  CHECK(trident::nn::forward_cost_per_row(gpt2.layers.back()) == config.vocab * config.hidden + config.hidden);
  if (p == 3) {
    Trainer trainer(world(), gpt2, pipeline_layout({"1f1b", 1}), settings_with(1));
    std::vector<int> counts;
    for (const auto& stage : trainer.stages()) counts.push_back(stage.end - stage.first);
    CHECK(counts == std::vector<int>{4, 3, 3});
  }
}

TEST_CASE("a step with activation recomputation gives the same numbers", "[pipeline][gpt2]") {
  const int p = trident_test::world_size();
  for (const auto& s : schedule_cases()) {
    INFO("schedule " << s.name << " p = " << p);
    compare_one_step(pipeline_layout(s, {}, true), micro_batches_for(p));
  }
}

TEST_CASE("the executor traces every action of every rank", "[pipeline][gpt2]") {
  const int p = trident_test::world_size();
  // One rank runs no pipeline with one stage: there the interleaved schedule's two chunks.
  const ScheduleCase s = p == 1 ? ScheduleCase{"interleaved", 2} : ScheduleCase{"zb", 1};
  Trainer trainer(world(), spec(), pipeline_layout(s), settings_with(1));
  trainer.step(batch_of(data_for(0, micro_batches_for(p))), 1e-3);
  REQUIRE(trainer.executor() != nullptr);
  const auto& executor = *trainer.executor();
  const auto& schedule = executor.schedule();
  CHECK(schedule.micro_batches == micro_batches_for(p));
  const auto& mine = executor.trace();
  const auto& list = schedule.actions_of(trainer.mesh().pp_rank());
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
  const auto all = executor.gather_trace();
  std::size_t expected = 0;
  for (int r = 0; r < p; ++r) expected += schedule.actions_of(r).size();
  CHECK(all.size() == expected);
  const auto bubble = trident::pipeline::measure_bubble(all, p);
  for (double b : bubble.bubble) CHECK((b >= 0 && b < 1));
  CHECK(trident::pipeline::chrome_trace(all)["traceEvents"].size() == expected + 2 * static_cast<std::size_t>(p));
}

namespace {

std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace

TEST_CASE("each stage loads its tensors from a one-rank checkpoint", "[pipeline][gpt2]") {
  const int p = trident_test::world_size(), rank = trident_test::world_rank(), m = micro_batches_for(p);
  const auto directory = std::filesystem::temp_directory_path();
  const std::string path =
      (directory / ("trident_pipeline_stage_load_np" + std::to_string(p) + ".safetensors")).string();
  const std::string again =
      (directory / ("trident_pipeline_stage_again_np" + std::to_string(p) + ".safetensors")).string();
  // The one-rank run, on every rank alike: 4 steps from perturbed parameters; rank 0 saves it.
  const trident::comm::Communicator self(MPI_COMM_SELF, "self");
  Trainer one(self, spec(), trident::train::Layout{}, settings_with(11, 1.0));
  perturb(one);
  for (int step = 1; step <= 4; ++step) one.step(batch_of(data_for(step, m)), 3e-3);
  if (rank == 0) one.save(path);
  MPI_Barrier(MPI_COMM_WORLD);

  Trainer pipe(world(), spec(), pipeline_layout({"interleaved", 2}), settings_with(11, 1.0));
  pipe.load(path);
  CHECK(pipe.steps_done() == 4);
  for (int c = 0; c < pipe.chunk_count(); ++c) {
    INFO("chunk " << c);
    CHECK(mismatched_values(pipe.chunk(c).parameters(), one.chunk(0).parameters()) == 0);
  }
  // Saved again from the stages, the checkpoint is the same file: the values, the AdamW moments
  // and the progress all came back.
  pipe.save(again);
  if (rank == 0) {
    const auto saved = file_bytes(path);
    const bool same_bytes = file_bytes(again) == saved;  // not printed: binary
    CHECK(!saved.empty());
    CHECK(same_bytes);
  }
  // And the next step is the one-rank step.
  const auto data = batch_of(data_for(5, m));
  const double expected = one.step(data, 3e-3).loss;
  CHECK(trident_test::relative_difference(pipe.step(data, 3e-3).loss, expected) < 1e-5);
  MPI_Barrier(MPI_COMM_WORLD);
  if (rank == 0) {
    std::filesystem::remove(path);
    std::filesystem::remove(again);
  }
}
