// Pipeline stages split over tensor-parallel groups (tp = 2 x pp = 2 on 4 ranks, with and
// without sequence parallelism) on train::Trainer against the one-rank model: loss, every
// gradient shard, wte's two copies, and the gradient norm, which counts each element once over
// both groups.

#include "gpt2_pipeline_helpers.hpp"

using namespace pipeline_gpt2_test;

TEST_CASE("tensor-parallel stages give the one-rank step", "[pipeline][tensor_parallel]") {
  if (trident_test::world_size() != 4) return;  // the layout needs tp * pp = 4 ranks
  const int m = 4;
  const double scale = 1.0 / (m * batch * seq);
  const auto data = data_for(3, m);
  Model one(Space(), config);
  one.initialize(7);
  perturb(one.parameters());
  one.zero_grad();
  const double one_loss = one_rank_step(one, data, scale) * scale;
  const double one_norm = trident::optim::sum_of_squares(Space(), one.parameters().grads());
  for (bool sequence_parallel : {false, true}) {
    for (const auto& s : schedule_cases()) {
      INFO("schedule " << s.name << " sequence parallel " << sequence_parallel);
      auto layout = pipeline_layout(s);
      layout.tp = 2;
      layout.pp = 2;
      layout.sequence_parallel = sequence_parallel;
      Trainer trainer(world(), spec(), layout, settings_with(7));
      REQUIRE(trainer.mesh().tp_size() == 2);
      perturb(trainer);
      const auto report = trainer.step(batch_of(data), 1e-3);
      REQUIRE(trainer.executor() != nullptr);
      CHECK(trainer.executor()->schedule().micro_batches == m);
      CHECK(trident_test::relative_difference(report.loss, one_loss) < 1e-5);
      for (int c = 0; c < trainer.chunk_count(); ++c) {
        std::string name;
        const double worst = worst_gradient_difference(trainer.chunk(c).parameters(), one.parameters(), &name);
        INFO("chunk " << c << ", worst tensor " << name);
        CHECK(worst < 1e-5);
      }
      const auto [first, last] = wte_copies(trainer, true);
      CHECK(!first.empty());
      CHECK(first == last);
      CHECK(trident_test::relative_difference(report.grad_norm * report.grad_norm, one_norm) < 1e-5);
    }
  }
}
