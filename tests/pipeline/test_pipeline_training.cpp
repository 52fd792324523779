// 20 training steps (AdamW, global-norm clipping) of pipeline-parallel GPT-2 give the one-rank
// losses, and the two copies of wte stay bit for bit identical.

#include "gpt2_pipeline_helpers.hpp"

using namespace pipeline_gpt2_test;

namespace {

const int steps = 20;
const double lr = 3e-3, max_norm = 0.3;

std::vector<double> train_one_rank(int m) {
  Model one(Space(), config);
  one.initialize(9);
  AdamW adamw(one.parameters(), {});
  const double scale = 1.0 / (m * batch * seq);
  std::vector<double> losses;
  for (int step = 1; step <= steps; ++step) {
    one.zero_grad();
    losses.push_back(one_rank_step(one, data_for(step, m), scale) * scale);
    const double norm = std::sqrt(trident::optim::sum_of_squares(Space(), one.parameters().grads()));
    trident::optim::scale_in_place(Space(), one.parameters().grads(), trident::optim::clip_coefficient(norm, max_norm));
    adamw.step(Space(), one.parameters(), step, lr);
  }
  return losses;
}

std::vector<double> train_pipeline(Pipeline& pipe, int m) {
  std::vector<std::unique_ptr<AdamW>> adamw;
  for (int c = 0; c < pipe.chunk_count(); ++c)
    adamw.push_back(std::make_unique<AdamW>(pipe.chunk(c).parameters(), trident::optim::AdamWSettings{}));
  const double scale = 1.0 / (m * batch * seq);
  std::vector<double> losses;
  for (int step = 1; step <= steps; ++step) {
    pipe.zero_grad();
    const auto data = data_for(step, m);
    losses.push_back(pipe.forward_backward(data.tokens, data.targets, scale) * scale);
    const double norm = std::sqrt(pipe.grad_norm_squared());
    pipe.scale_gradients(trident::optim::clip_coefficient(norm, max_norm));
    for (int c = 0; c < pipe.chunk_count(); ++c)
      adamw[static_cast<std::size_t>(c)]->step(Space(), pipe.chunk(c).parameters(), step, lr);
  }
  return losses;
}

}  // namespace

TEST_CASE("20 training steps give the one-rank losses; the wte copies stay identical", "[pipeline][training]") {
  const int p = trident_test::world_size(), m = micro_batches_for(p);
  const auto expected = train_one_rank(m);
  CHECK(expected.back() < expected.front());  // it trains
  for (const auto& s : schedule_cases()) {
    INFO("schedule " << s.name << " p = " << p << " v = " << s.chunks);
    const auto plan = trident::gpt2::plan_gpt2_pipeline(config, s.name, p, m, s.chunks);
    Pipeline pipe(Space(), config, plan, world(), batch, seq);
    pipe.initialize(9);
    const auto losses = train_pipeline(pipe, m);
    double worst = 0;
    for (std::size_t k = 0; k < expected.size(); ++k)
      worst = std::max(worst, trident_test::relative_difference(losses[k], expected[k]));
    CHECK(worst < 1e-4);
    const auto [first, last] = wte_copies(pipe, false);
    CHECK(first == last);
  }
}
