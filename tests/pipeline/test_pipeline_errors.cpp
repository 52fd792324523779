// What cannot run is refused with one clear error before any work, on every rank together.

#include "gpt2_pipeline_helpers.hpp"

#include <trident/pipeline/executor.hpp>
#include <trident/pipeline/schedules.hpp>

using namespace pipeline_gpt2_test;
using Catch::Contains;
using trident::InvalidArgument;

namespace {

trident::train::Layout layout_of(int pp, const std::string& schedule, int chunks = 1,
                                 std::vector<int> stage_layers = {}) {
  trident::train::Layout layout;
  layout.pp = pp;
  layout.schedule = schedule;
  layout.virtual_stages = chunks;
  layout.stage_layers = std::move(stage_layers);
  return layout;
}

// The one-rank loss of step `step` of m micro-batches from seed 1.
double one_rank_loss(int step, int m) {
  Model one(Space(), config);
  one.initialize(1);
  const double scale = 1.0 / (m * batch * seq);
  return one_rank_step(one, data_for(step, m), scale) * scale;
}

}  // namespace

TEST_CASE("bad pipeline layouts are refused before any work", "[pipeline][errors]") {
  const auto gpt2 = spec();  // 10 top-level layers: the embeddings, L = 8 blocks, the head
  CHECK_THROWS_WITH(layout_of(11, "1f1b").validate(11, gpt2),
                    Contains("11 pipeline stages (pp 11 x 1 chunks) but the model has only 10 top-level layers"));
  CHECK_THROWS_WITH(layout_of(4, "interleaved", 3).validate(4, gpt2),
                    Contains("12 pipeline stages (pp 4 x 3 chunks) but the model has only 10"));
  CHECK_THROWS_WITH(layout_of(3, "1f1b", 1, {4, 4, 3}).validate(3, gpt2),
                    Contains("stage_layers add up to 11 but the model has 10 top-level layers"));
  CHECK_THROWS_WITH(layout_of(3, "1f1b", 1, {5, 5}).validate(3, gpt2), Contains("2 stage_layers entries for 3 stages"));
  CHECK_THROWS_WITH(layout_of(2, "1f1b", 1, {10, 0}).validate(2, gpt2), Contains("every stage needs a layer, got 0"));
  CHECK_THROWS_WITH(layout_of(2, "1f1b", 2).validate(2, gpt2),
                    Contains("2 chunks per rank need the interleaved schedule, not '1f1b'"));
  CHECK_THROWS_WITH(layout_of(2, "1f1b").validate(3, gpt2), Contains("= 2 ranks, but the communicator has 3"));
  auto negative = layout_of(2, "1f1b");
  negative.micro_batch = -1;
  CHECK_THROWS_WITH(negative.validate(2, gpt2), Contains("micro_batch must be >= 0"));
  // The micro-batch counts a schedule cannot take.
  CHECK_THROWS_WITH(trident::pipeline::make_schedule("interleaved", 4, 6, 2),
                    Contains("m = 6 must be a multiple of the number of ranks p = 4"));
  CHECK_THROWS_WITH(trident::pipeline::make_schedule("zb", 4, 3), Contains("got m = 3 for p = 4"));
  CHECK_THROWS_AS(trident::pipeline::make_schedule("1f1b", 2, 0), InvalidArgument);

  // The Trainer refuses a bad layout on every rank, before it builds anything.
  const int p = trident_test::world_size();
  CHECK_THROWS_WITH(Trainer(world(), gpt2, layout_of(p, "1f1b", 1, std::vector<int>(static_cast<std::size_t>(p), 1))),
                    Contains("stage_layers add up to " + std::to_string(p) + " but the model has 10"));
  // A stage of a model is a range of its layers, and runs only by the stage passes.
  CHECK_THROWS_WITH(Chunk(Space(), gpt2, Chunk::group_type::single(), {2, 11}),
                    Contains("is not a non-empty range of the model's 10 top-level layers"));
  Chunk stage(Space(), gpt2, Chunk::group_type::single(), {0, 4});
  const auto data = batch_of(data_for(0, 1));
  CHECK_THROWS_WITH(stage.forward(data.inputs, data.targets, 1.0), Contains("run it with the stage passes"));
  CHECK_THROWS_WITH(stage.set_micro_batches({data.inputs}, {data.targets}, 0.0), Contains("non-zero loss scale"));
}

TEST_CASE("a schedule that cannot take the batch's micro-batches stops the step on every rank", "[pipeline][errors]") {
  const int p = trident_test::world_size();
  if (p == 1) return;  // one rank takes any number of micro-batches
  // ZB-H1 needs m >= p; the interleaved schedule a multiple of p.
  Trainer zb(world(), spec(), pipeline_layout({"zb", 1}), settings_with(1));
  CHECK_THROWS_WITH(zb.step(batch_of(data_for(0, p - 1)), 1e-3),
                    Contains("got m = " + std::to_string(p - 1) + " for p = " + std::to_string(p)));
  Trainer interleaved(world(), spec(), pipeline_layout({"interleaved", 2}), settings_with(1));
  CHECK_THROWS_WITH(
      interleaved.step(batch_of(data_for(0, p + 1)), 1e-3),
      Contains("m = " + std::to_string(p + 1) + " must be a multiple of the number of ranks p = " + std::to_string(p)));
  // Nothing was left half done: a good step is the one-rank step.
  const int m = micro_batches_for(p);
  for (Trainer* trainer : {&zb, &interleaved}) {
    CHECK(trainer->steps_done() == 0);
    CHECK(trident_test::relative_difference(trainer->step(batch_of(data_for(0, m)), 1e-3).loss, one_rank_loss(0, m)) <
          1e-5);
    CHECK(trainer->steps_done() == 1);
  }
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
  // Rank 0 passes no chunks: all ranks hear of it.
  {
    Executor executor(Space(), world(), trident::pipeline::one_f_one_b(p, m), batch * seq, config.hidden);
    Chunk stage(Space(), spec(), Chunk::group_type::single(),
                trident::nn::even_stages(config.layers + 2, p)[static_cast<std::size_t>(rank)]);
    std::vector<Chunk*> chunks;
    if (rank != 0) chunks.push_back(&stage);
    CHECK_THROWS_WITH(executor.run(chunks), Contains("passed 0"));
  }

  Trainer trainer(world(), spec(), pipeline_layout({"1f1b", 1}), settings_with(1));
  const auto data = data_for(0, m);
  const auto good = batch_of(data);
  // Rank 0 passes a batch that is not whole sequences.
  auto ragged = good;
  if (rank == 0) {
    const std::pair<std::int64_t, std::int64_t> rows{0, good.inputs.extent(0) - 1};
    ragged.inputs = Kokkos::subview(good.inputs, rows, Kokkos::ALL);
    ragged.targets.classes = Kokkos::subview(good.targets.classes, rows);
  }
  CHECK_THROWS_WITH(trainer.step(ragged, 1e-3), Contains("not a whole number of samples of 8 rows"));
  // The last rank passes targets for fewer rows than the inputs.
  auto short_targets = good;
  if (rank == p - 1)
    short_targets.targets.classes =
        Kokkos::subview(good.targets.classes, std::pair<std::int64_t, std::int64_t>{0, batch * seq});
  CHECK_THROWS_WITH(trainer.step(short_targets, 1e-3), Contains("the targets do not have the batch's"));
  // Rank 0 passes one micro-batch fewer than the others: the pipeline's schedules differ.
  if (p > 1) {
    auto fewer = data;
    if (rank == 0) fewer.tokens.pop_back(), fewer.targets.pop_back();
    CHECK_THROWS_WITH(trainer.step(batch_of(fewer), 1e-3), Contains("passed different schedules"));
  }
  // A token outside the vocabulary on the last rank only: only the first stage reads the ids,
  // yet every rank stops.
  {
    auto bad = data;
    if (rank == p - 1) bad.tokens[0][3] = config.vocab;
    CHECK_THROWS_WITH(trainer.step(batch_of(bad), 1e-3),
                      Contains("the input of row 3 is 29, not a token id in [0, 29)"));
  }
  // Nothing was left half done: a good step is the one-rank step.
  CHECK(trainer.steps_done() == 0);
  CHECK(trident_test::relative_difference(trainer.step(good, 1e-3).loss, one_rank_loss(0, m)) < 1e-5);
  CHECK(trainer.steps_done() == 1);
}
