// Checkpoints do not depend on the layout: a run saved data-parallel with sharded optimizer
// state and gradients loads on one rank, and at any dp and ZeRO stage, and continues with the
// losses of the run that saved it.

#include "../io/temporary_directory.hpp"
#include "data_parallel_test_helpers.hpp"

#include <trident/io/safetensors.hpp>
#include <trident/nn/parameters.hpp>

#include <filesystem>
#include <string>
#include <vector>

namespace {

using namespace trident_test;

trident::comm::Communicator split_world(int color, const std::string& label) {
  return world().split(color, world_rank(), label);
}

std::vector<double> as_double(const std::vector<float>& values) {
  return std::vector<double>(values.begin(), values.end());
}

}  // namespace

TEST_CASE("a checkpoint saved at dp=2 ZeRO-2 continues at dp=1 and at dp=N ZeRO-3", "[data_parallel][checkpoint]") {
  SharedTemporaryDirectory dir;
  const auto config = uneven_config();
  const auto spec = trident::gpt2::gpt2_spec(config);
  const auto data = make_data(config);
  const int size = world_size(), rank = world_rank();
  const int saving_dp = std::min(2, size);
  const int group = rank / saving_dp;  // groups of saving_dp ranks; each saves its own file
  const std::string file = dir.file("zero2_group" + std::to_string(group) + ".safetensors");
  const std::string group0_file = dir.file("zero2_group0.safetensors");

  Run expected;
  Tensors saved_parameters;
  {
    Trainer saver(split_world(group, "saver"), spec, layout_for(saving_dp, 2, 0.02), settings());
    continue_run(saver, data, 3);
    saver.save(file);
    saved_parameters = saver.global_parameters();
    expected = continue_run(saver, data, 5);
  }
  MPI_Barrier(MPI_COMM_WORLD);

  SECTION("the file is the one-rank checkpoint") {
    trident::io::SafetensorsFile saved(group0_file);
    CHECK(saved.tensors().size() == 3 * trident::nn::model_tensors(spec).size());
    CHECK(saved.metadata().at("format") == "trident.train");
    CHECK(saved.metadata().at("step") == "3");
    CHECK(saved.metadata().at("samples") == std::to_string(3 * global_batch));
    CHECK(saved.metadata().at("seed") == std::to_string(seed));
    CHECK(saved.tensor("optimizer.exp_avg_sq.h.1.attn.c_attn.weight").shape == trident::io::Shape{33, 99});
    for (const auto& [name, values] : saved_parameters) {
      INFO(name);
      CHECK(as_double(saved.read<float>(name, saved.tensor(name).shape)) == values);
    }
  }
  for (int stage : {0, 3}) {
    DYNAMIC_SECTION("dp=1 ZeRO-" << stage) {
      Trainer alone(self(), spec, layout_for(1, stage), settings(999));
      alone.load(group0_file);
      CHECK(alone.steps_done() == 3);
      CHECK(alone.samples_seen() == 3 * global_batch);
      CHECK(alone.settings().seed == seed);
      const Run run = continue_run(alone, data, 5);
      INFO("dp=1 ZeRO-" << stage << ": losses differ by " << worst_relative(run.losses, expected.losses));
      CHECK(worst_relative(run.losses, expected.losses) <= 1e-4);
      CHECK(model_difference(run.parameters, expected.parameters) <= 1e-5);
    }
  }
  for (int stage : {1, 3}) {
    DYNAMIC_SECTION("dp=" << size << " ZeRO-" << stage) {
      Trainer all(world(), spec, layout_for(size, stage, 0.02), settings(999));
      all.load(group0_file);
      CHECK(all.steps_done() == 3);
      CHECK(all.settings().seed == seed);
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
  const auto spec = trident::gpt2::gpt2_spec(config);
  const auto data = make_data(config);
  Trainer sharded(world(), spec, layout_for(world_size(), 3, 0.02), settings());
  const Tensors parameters = continue_run(sharded, data, 2).parameters;
  sharded.save(dir.file("zero3.safetensors"));

  // The file holds the parameters bit for bit.
  if (world_rank() == 0) {
    trident::io::SafetensorsFile file(dir.file("zero3.safetensors"));
    for (const auto& [name, values] : parameters) {
      INFO(name);
      CHECK(as_double(file.read<float>(name, file.tensor(name).shape)) == values);
    }
  }
  // Loading into another ZeRO-3 group and saving again gives the same bytes.
  Trainer reloaded(world(), spec, layout_for(world_size(), 3, 0.02), settings(999));
  reloaded.load(dir.file("zero3.safetensors"));
  CHECK(reloaded.global_parameters() == parameters);
  reloaded.save(dir.file("again.safetensors"));
  if (world_rank() == 0) {
    trident::io::SafetensorsFile a(dir.file("zero3.safetensors")), b(dir.file("again.safetensors"));
    REQUIRE(a.tensors().size() == b.tensors().size());
    CHECK(a.metadata() == b.metadata());
    for (const auto& t : a.tensors()) {
      INFO(t.name);
      CHECK(a.read<float>(t.name, t.shape) == b.read<float>(t.name, t.shape));
    }
  }
}

TEST_CASE("a checkpoint every rank cannot read stops every rank", "[data_parallel][checkpoint]") {
  SharedTemporaryDirectory dir;
  const auto config = even_config();
  const auto spec = trident::gpt2::gpt2_spec(config);
  Trainer trainer(world(), spec, layout_for(world_size(), 2), settings());
  const Tensors before = trainer.global_parameters();
  // Only rank 0's path exists: the others fail to read, rank 0 hears of it.
  if (world_rank() == 0) {
    Trainer one_rank(self(), spec, layout_for(1), settings(6));
    one_rank.save(dir.file("only_rank0.safetensors"));
  }
  MPI_Barrier(MPI_COMM_WORLD);
  const std::string path = world_rank() == 0 ? dir.file("only_rank0.safetensors") : dir.file("missing.safetensors");
  if (world_size() == 1) {
    CHECK_NOTHROW(trainer.load(path));
    CHECK(trainer.settings().seed == 6);
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
  // Nothing changed on any rank, rank 0's readable file included.
  CHECK(trainer.global_parameters() == before);
  CHECK(trainer.settings().seed == seed);
  // A path nobody can write: every rank throws.
  CHECK_THROWS(trainer.save(dir.file("no/such/dir/x.safetensors")));
}
