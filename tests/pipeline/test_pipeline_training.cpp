// 20 training steps (AdamW, global-norm clipping) of pipeline-parallel GPT-2 on train::Trainer
// give the one-rank model's losses, the trained pipeline evaluates a batch as the one-rank model
// does, and the two copies of wte stay bit for bit identical.

#include "gpt2_pipeline_helpers.hpp"

#include <iterator>
#include <numeric>

using namespace pipeline_gpt2_test;

namespace {

const int steps = 20;
const double lr = 3e-3, max_norm = 0.3;
const auto adamw_settings = trident::optim::AdamWSettings::gpt2();

// The one-rank model trained by hand (accumulated micro-batches, clipping, AdamW): the mean
// loss of every step, and that of the last step's batch once the last step is applied.
struct OneRankRun {
  std::vector<double> losses;
  double last_batch_after = 0;
};

OneRankRun train_one_rank(int m) {
  Model one(Space(), config);
  one.initialize(9);
  AdamW adamw(one.parameters(), adamw_settings);
  const double scale = 1.0 / (m * batch * seq);
  OneRankRun run;
  for (int step = 1; step <= steps; ++step) {
    one.zero_grad();
    run.losses.push_back(one_rank_step(one, data_for(step, m), scale) * scale);
    const double norm = std::sqrt(trident::optim::sum_of_squares(Space(), one.parameters().grads()));
    trident::optim::scale_in_place(Space(), one.parameters().grads(), trident::optim::clip_coefficient(norm, max_norm));
    adamw.step(Space(), one.parameters(), step, lr);
  }
  const auto last = data_for(steps, m);
  for (int i = 0; i < m; ++i) run.last_batch_after += one.forward(last.tokens[i], last.targets[i], batch, seq) * scale;
  return run;
}

std::vector<double> train_pipeline(Trainer& trainer, int m) {
  std::vector<double> losses;
  for (int step = 1; step <= steps; ++step) {
    const auto report = trainer.step(batch_of(data_for(step, m)), lr);
    CHECK(!report.skipped);
    losses.push_back(report.loss);
  }
  return losses;
}

}  // namespace

TEST_CASE("20 training steps give the one-rank losses; the wte copies stay identical", "[pipeline][training]") {
  const int p = trident_test::world_size(), m = micro_batches_for(p);
  const auto expected = train_one_rank(m);
  // It trains: the batches change every step, so compare the mean loss of the last five steps
  // with that of the first five.
  const auto mean_of = [](auto begin, auto end) {
    return std::accumulate(begin, end, 0.0) / std::distance(begin, end);
  };
  CHECK(mean_of(expected.losses.end() - 5, expected.losses.end()) <
        mean_of(expected.losses.begin(), expected.losses.begin() + 5));
  for (const auto& s : schedule_cases()) {
    INFO("schedule " << s.name << " p = " << p << " v = " << s.chunks);
    auto settings = settings_with(9, max_norm);
    settings.adamw = adamw_settings;
    Trainer trainer(world(), spec(), pipeline_layout(s), settings);
    const auto losses = train_pipeline(trainer, m);
    CHECK(trainer.steps_done() == steps);
    REQUIRE(losses.size() == expected.losses.size());
    double worst = 0;
    for (std::size_t k = 0; k < losses.size(); ++k)
      worst = std::max(worst, trident_test::relative_difference(losses[k], expected.losses[k]));
    CHECK(worst < 1e-4);
    const double evaluated = trainer.evaluate(batch_of(data_for(steps, m)));
    CHECK(trident_test::relative_difference(evaluated, expected.last_batch_after) < 1e-4);
    const auto [first, last] = wte_copies(trainer, false);
    CHECK(first == last);
  }
}
