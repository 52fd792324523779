// Pipeline stages split over tensor-parallel groups (tp = 2 x pp = 2 on 4 ranks, with and
// without sequence parallelism) against the one-rank model: loss, every gradient shard and
// the gradient norm, which counts each element once over both groups.

#include "gpt2_pipeline_helpers.hpp"

#include <trident/mesh/process_mesh.hpp>

using namespace pipeline_gpt2_test;

TEST_CASE("tensor-parallel stages give the one-rank step", "[pipeline][tensor_parallel]") {
  if (trident_test::world_size() != 4) return;  // the mesh needs tp * pp = 4 ranks
  const trident::ProcessMesh mesh(world(), 1, 2, 2);
  const int m = 4;
  const double scale = 1.0 / (m * batch * seq);
  const auto data = data_for(3, m);
  Model one(Space(), config);
  one.initialize(7);
  perturb(one.parameters());
  one.zero_grad();
  const double one_loss = one_rank_step(one, data, scale);
  const double one_norm = trident::optim::sum_of_squares(Space(), one.parameters().grads());
  for (bool sequence_parallel : {false, true}) {
    for (const auto& s : schedule_cases()) {
      INFO("schedule " << s.name << " sequence parallel " << sequence_parallel);
      const auto plan = trident::gpt2::plan_gpt2_pipeline(config, s.name, 2, m, s.chunks);
      Pipeline pipe(Space(), config, plan, mesh.pp(), batch, seq, {mesh.tp(), sequence_parallel});
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
      CHECK(trident_test::relative_difference(pipe.grad_norm_squared(), one_norm) < 1e-5);
    }
  }
}
