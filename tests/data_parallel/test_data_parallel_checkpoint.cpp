// Checkpoints do not depend on the layout: a run saved data-parallel with sharded optimizer
// state and gradients loads on one rank, and at any dp and ZeRO stage, and continues with the
// losses of the run that saved it.

#include "../io/temporary_directory.hpp"
#include "data_parallel_test_helpers.hpp"

#include <trident/io/safetensors.hpp>

#include <filesystem>
#include <string>
#include <vector>

namespace {

using namespace trident_test;

trident::comm::Communicator split_world(int color, const std::string& label) {
  return world().split(color, world_rank(), label);
}

}  // namespace

TEST_CASE("a checkpoint saved at dp=2 ZeRO-2 continues at dp=1 and at dp=N ZeRO-3", "[data_parallel][checkpoint]") {
  SharedTemporaryDirectory dir;
  const auto config = uneven_config();
  const auto data = make_data(config);
  const int size = world_size(), rank = world_rank();
  const int saving_dp = std::min(2, size);
  const int group = rank / saving_dp;  // groups of saving_dp ranks; each saves its own file
  const std::string file = dir.file("zero2_group" + std::to_string(group) + ".safetensors");
  const std::string group0_file = dir.file("zero2_group0.safetensors");

  Run expected;
  {
    auto dp = split_world(group, "dp");
    Trainer saver(Space(), config, settings_for(saving_dp), seed, dp, zero(2, 0.02));
    continue_run(saver, data, 3);
    saver.save(file);
    expected = continue_run(saver, data, 5);
  }
  MPI_Barrier(MPI_COMM_WORLD);

  SECTION("the file is the one-rank checkpoint") {
    trident::io::SafetensorsFile saved(group0_file);
    Trainer one_rank(Space(), config, settings_for(1), 999);
    CHECK(saved.tensors().size() == 3 * one_rank.model().parameters().tensors().size());
    CHECK(saved.metadata().at("step") == "3");
    CHECK(saved.tensor("optimizer.exp_avg_sq.h.1.attn.c_attn.weight").shape == trident::io::Shape{33, 99});
  }
  SECTION("plain one-rank trainer") {
    Trainer one_rank(Space(), config, settings_for(1), 999);
    one_rank.load(group0_file);
    CHECK(one_rank.progress().step == 3);
    std::vector<double> losses;
    for (int s = 0; s < 5; ++s) losses.push_back(one_rank.train_step(data).loss);
    INFO("one rank: losses differ by " << worst_relative(losses, expected.losses));
    CHECK(worst_relative(losses, expected.losses) <= 1e-4);
  }
  for (int stage : {0, 3}) {
    DYNAMIC_SECTION("dp=1 ZeRO-" << stage) {
      Trainer alone(Space(), config, settings_for(1), 999, split_world(rank, "dp"), zero(stage));
      alone.load(group0_file);
      const Run run = continue_run(alone, data, 5);
      INFO("dp=1 ZeRO-" << stage << ": losses differ by " << worst_relative(run.losses, expected.losses));
      CHECK(worst_relative(run.losses, expected.losses) <= 1e-4);
      CHECK(model_difference(run.parameters, expected.parameters) <= 1e-5);
    }
  }
  for (int stage : {1, 3}) {
    DYNAMIC_SECTION("dp=" << size << " ZeRO-" << stage) {
      Trainer all(Space(), config, settings_for(size), 999, world(), zero(stage, 0.02));
      all.load(group0_file);
      CHECK(all.progress().step == 3);
      CHECK(all.progress().seed == seed);
      const Run run = continue_run(all, data, 5);
      INFO("dp=" << size << " ZeRO-" << stage << ": losses differ by " << worst_relative(run.losses, expected.losses));
      CHECK(worst_relative(run.losses, expected.losses) <= 1e-4);
      CHECK(model_difference(run.parameters, expected.parameters) <= 1e-5);
    }
  }
}

TEST_CASE("saving from ZeRO-3 shards writes the parameters and moments exactly", "[data_parallel][checkpoint]") {
  SharedTemporaryDirectory dir;
  const auto config = uneven_config();
  const auto data = make_data(config);
  Trainer sharded(Space(), config, settings_for(world_size()), seed, world(), zero(3, 0.02));
  continue_run(sharded, data, 2);
  sharded.save(dir.file("zero3.safetensors"));
  const auto parameters = to_host(sharded.parallel()->full_values());

  // Loading into another ZeRO-3 group and saving again gives the same bytes.
  Trainer reloaded(Space(), config, settings_for(world_size()), 999, world(), zero(3, 0.02));
  reloaded.load(dir.file("zero3.safetensors"));
  CHECK(to_host(reloaded.parallel()->full_values()) == parameters);
  reloaded.save(dir.file("again.safetensors"));
  if (world_rank() == 0) {
    trident::io::SafetensorsFile a(dir.file("zero3.safetensors")), b(dir.file("again.safetensors"));
    for (const auto& t : a.tensors()) {
      INFO(t.name);
      CHECK(a.read<float>(t.name, t.shape) == b.read<float>(t.name, t.shape));
    }
  }
}

TEST_CASE("a checkpoint every rank cannot read stops every rank", "[data_parallel][checkpoint]") {
  SharedTemporaryDirectory dir;
  const auto config = even_config();
  Trainer trainer(Space(), config, settings_for(world_size()), seed, world(), zero(2));
  // Only rank 0's path exists: the others fail to read, rank 0 hears of it.
  if (world_rank() == 0) {
    Trainer one_rank(Space(), config, settings_for(1), seed);
    one_rank.save(dir.file("only_rank0.safetensors"));
  }
  const std::string path = world_rank() == 0 ? dir.file("only_rank0.safetensors") : dir.file("missing.safetensors");
  if (world_size() == 1) {
    CHECK_NOTHROW(trainer.load(path));
    return;
  }
  try {
    trainer.load(path);
    FAIL("a rank that could not read the checkpoint did not stop the others");
  } catch (const std::exception& e) {
    const std::string message = e.what();
    if (world_rank() == 0) {
      CHECK_THAT(message, Catch::Contains("failed on rank(s) 1"));
    } else {
      CHECK_THAT(message, Catch::Contains("missing.safetensors"));
    }
  }
  // A path nobody can write: every rank throws.
  CHECK_THROWS(trainer.save(dir.file("no/such/dir/x.safetensors")));
}
