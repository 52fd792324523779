// What cannot run is refused with one clear error before any work, on every rank together.

#include "gpt2_pipeline_helpers.hpp"

#include <trident/pipeline/executor.hpp>
#include <trident/pipeline/schedules.hpp>

using namespace pipeline_gpt2_test;
using Catch::Contains;
using trident::InvalidArgument;
using trident::gpt2::plan_gpt2_pipeline;

TEST_CASE("bad pipeline layouts are refused before any work", "[pipeline][errors]") {
  CHECK_THROWS_WITH(plan_gpt2_pipeline(config, "1f1b", 9, 9), Contains("L = 8 blocks cannot fill 9 stages"));
  CHECK_THROWS_WITH(plan_gpt2_pipeline(config, "interleaved", 4, 8, 3), Contains("L = 8 blocks cannot fill 12 stages"));
  CHECK_THROWS_WITH(plan_gpt2_pipeline(config, "interleaved", 4, 6, 2),
                    Contains("m = 6 must be a multiple of the number of ranks p = 4"));
  CHECK_THROWS_WITH(plan_gpt2_pipeline(config, "zb", 4, 3), Contains("got m = 3 for p = 4"));
  CHECK_THROWS_WITH(plan_gpt2_pipeline(config, "1f1b", 3, 3, 1, "3,3,3"),
                    Contains("adds up to 9 blocks, but the model has L = 8"));
  CHECK_THROWS_WITH(plan_gpt2_pipeline(config, "1f1b", 3, 3, 1, "4,4"), Contains("has 2 entries for 3 stages"));
  CHECK_THROWS_WITH(plan_gpt2_pipeline(config, "1f1b", 2, 4, 1, "8,0"), Contains("every stage needs at least one"));
  CHECK_THROWS_WITH(plan_gpt2_pipeline(config, "1f1b", 2, 4, 2), Contains("only 'interleaved' takes v > 1"));
  CHECK_THROWS_AS(plan_gpt2_pipeline(config, "1f1b", 2, 0), InvalidArgument);

  CHECK_THROWS_WITH(Model(Space(), config, trident::gpt2::Gpt2Stage{2, 9, false, true}),
                    Contains("not a non-empty range of the model's L = 8 blocks"));
  CHECK_THROWS_WITH(Model(Space(), config, trident::gpt2::Gpt2Stage{0, 4, false, false}),
                    Contains("must hold the embedding exactly when it starts at block 0"));
  Model stage(Space(), config, trident::gpt2::Gpt2Stage{0, 4, true, false});
  CHECK_THROWS_WITH(stage.forward(data_for(0, 1).tokens[0], data_for(0, 1).targets[0], batch, seq, 1.0),
                    Contains("run it with the stage passes"));
  CHECK_THROWS_WITH(stage.set_micro_batches(data_for(0, 1).tokens, data_for(0, 1).targets, batch, seq, 0.0),
                    Contains("non-zero loss scale"));
}

TEST_CASE("an argument that is bad on one rank makes every rank throw", "[pipeline][errors]") {
  const int p = trident_test::world_size(), rank = trident_test::world_rank(), m = micro_batches_for(p);
  using Executor = trident::pipeline::Executor<float, Space>;
  // A schedule for another number of ranks.
  CHECK_THROWS_WITH(Executor(Space(), world(), trident::pipeline::one_f_one_b(p + 1, m), batch * seq, config.hidden),
                    Contains("is for p = " + std::to_string(p + 1)));
  // Schedules that differ between the ranks.
  if (p > 1) {
    CHECK_THROWS_WITH(Executor(Space(), world(), trident::pipeline::one_f_one_b(p, rank == p - 1 ? m + 1 : m),
                               batch * seq, config.hidden),
                      Contains("passed different schedules"));
  }

  const auto plan = plan_gpt2_pipeline(config, "1f1b", p, m);
  Pipeline pipe(Space(), config, plan, world(), batch, seq);
  pipe.initialize(1);
  const auto data = data_for(0, m);
  // Rank 0 passes no chunks: all ranks hear of it.
  std::vector<Model*> chunks;
  if (rank != 0) chunks.push_back(&pipe.chunk(0));
  CHECK_THROWS_WITH(pipe.executor().run(chunks), Contains("passed 0"));
  // A token outside the vocabulary on the last rank only.
  auto bad = data;
  if (rank == p - 1) bad.tokens[0][3] = config.vocab;
  CHECK_THROWS_WITH(pipe.forward_backward(bad.tokens, bad.targets, 1.0), Contains("outside the vocabulary"));
  // The wrong number of micro-batches on rank 0 only.
  auto short_data = data;
  if (rank == 0) short_data.tokens.pop_back(), short_data.targets.pop_back();
  CHECK_THROWS_WITH(pipe.forward_backward(short_data.tokens, short_data.targets, 1.0),
                    Contains("runs m = " + std::to_string(m)));
  // Nothing was left half done: a good step still runs.
  pipe.zero_grad();
  CHECK(std::isfinite(pipe.forward_backward(data.tokens, data.targets, 1.0)));
}
