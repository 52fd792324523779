// GPT-2 checkpoints of train::Trainer on one rank: saving at step k, loading and continuing
// reproduces the uninterrupted run bitwise; bad checkpoints give errors naming what is wrong and
// leave the model untouched; a non-finite step is skipped or stops.

#include "trident_test.hpp"

#include <trident/data/synthetic.hpp>
#include <trident/gpt2/batch.hpp>
#include <trident/gpt2/checkpoint.hpp>
#include <trident/gpt2/spec.hpp>
#include <trident/io/safetensors.hpp>
#include <trident/nn/model.hpp>
#include <trident/optim/lr_schedule.hpp>
#include <trident/train.hpp>

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

namespace {

using Space = Kokkos::DefaultExecutionSpace;
using Trainer = trident::train::Trainer<float, Space>;
using Tensors = Trainer::Tensors;
namespace fs = std::filesystem;

const trident::gpt2::Gpt2Config config{2, 2, 16, 8, 23};
const trident::optim::CosineSchedule schedule{3e-3, 2, 8, 0.1};
constexpr std::int64_t batch_size = 4;  // sequences per step, in micro-batches of 2

trident::train::Layout layout() {
  trident::train::Layout l;
  l.micro_batch = 2;
  return l;
}

trident::train::TrainerSettings settings(std::uint64_t seed = 5) {
  trident::train::TrainerSettings s;
  s.adamw = trident::optim::AdamWSettings::gpt2();
  s.grad_clip = 0.5;  // small enough to clip: the clipped path is part of what must resume exactly
  s.seed = seed;
  return s;
}

// A trainer of `model` (the test's config by default) that saves its config, as train_gpt's.
struct Gpt2Run {
  explicit Gpt2Run(std::uint64_t seed = 5, const trident::gpt2::Gpt2Config& model = config)
      : trainer(trident::comm::Communicator(MPI_COMM_WORLD, "world"), trident::gpt2::gpt2_spec(model), layout(),
                settings(seed)),
        model_config(model) {
    trainer.set_metadata("config", trident::gpt2::config_to_json(model).dump());
  }

  trident::train::StepReport step(const trident::data::BatchLoader& data) {
    const std::int64_t step = trainer.steps_done() + 1;
    return trainer.step(trident::gpt2::gpt2_token_batch<float, Space>(data.batch(step - 1), false), schedule(step));
  }

  // Loads `path`, refusing a checkpoint of another GPT-2 config (as train_gpt does).
  void load(const std::string& path) {
    trainer.load(path, [&](const trident::io::Metadata& metadata) {
      const auto saved = trident::gpt2::checkpoint_config(metadata, path);
      trident::require_argument(saved == model_config, "checkpoint '", path, "' holds a model with ", saved.describe(),
                                " but the model asked for has ", model_config.describe());
    });
  }

  Tensors parameters() { return trainer.global_parameters(); }

  Trainer trainer;
  trident::gpt2::Gpt2Config model_config;
};

trident::data::BatchLoader make_data() {
  trident::data::SyntheticMarkovLanguage language(config.vocab, 3, 11);
  return trident::data::BatchLoader(language.generate(4096), batch_size, config.seq);
}

struct ScratchDirectory {
  fs::path path;
  ScratchDirectory() {
    path = fs::temp_directory_path() / ("trident_ckpt_" + std::to_string(::getpid()));
    fs::create_directories(path);
  }
  ~ScratchDirectory() { fs::remove_all(path); }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

}  // namespace

TEST_CASE("save at step k, load, continue: bitwise the losses of the run that never stopped", "[checkpoint]") {
  ScratchDirectory dir;
  const auto data = make_data();
  Gpt2Run straight;
  std::vector<double> expected;
  for (int s = 0; s < 8; ++s) expected.push_back(straight.step(data).loss);

  Gpt2Run first;
  for (int s = 0; s < 3; ++s) CHECK(first.step(data).loss == expected[static_cast<std::size_t>(s)]);
  first.trainer.save(dir.file("step3.safetensors"));

  Gpt2Run resumed(999);  // a different seed: everything must come from the file
  CHECK(resumed.parameters() != first.parameters());
  resumed.load(dir.file("step3.safetensors"));
  CHECK(resumed.trainer.steps_done() == 3);
  CHECK(resumed.trainer.samples_seen() == 3 * batch_size);
  CHECK(resumed.trainer.settings().seed == 5);
  CHECK(resumed.parameters() == first.parameters());
  for (int s = 3; s < 8; ++s) {
    const auto report = resumed.step(data);
    CHECK(report.step == s + 1);
    CHECK(report.loss == expected[static_cast<std::size_t>(s)]);
  }
  CHECK(resumed.parameters() == straight.parameters());
}

TEST_CASE("the checkpoint holds Hugging Face names, AdamW moments and metadata", "[checkpoint]") {
  ScratchDirectory dir;
  const auto data = make_data();
  Gpt2Run run;
  run.step(data);
  run.trainer.save(dir.file("c.safetensors"));
  trident::io::SafetensorsFile file(dir.file("c.safetensors"));
  CHECK(file.tensor("wte.weight").shape == trident::io::Shape{23, 16});
  CHECK(file.tensor("h.1.attn.c_attn.weight").shape == trident::io::Shape{16, 48});
  CHECK(file.tensor("h.0.mlp.c_proj.weight").shape == trident::io::Shape{64, 16});
  CHECK(file.tensor("optimizer.exp_avg.ln_f.bias").shape == trident::io::Shape{16});
  CHECK(file.tensor("optimizer.exp_avg_sq.wpe.weight").shape == trident::io::Shape{8, 16});
  const Tensors params = run.parameters();
  CHECK(params.size() == 4 + 12 * static_cast<std::size_t>(config.layers));
  CHECK(file.tensors().size() == 3 * params.size());
  CHECK(file.metadata().at("format") == "trident.train");
  CHECK(file.metadata().at("step") == "1");
  CHECK(file.metadata().at("samples") == "4");
  CHECK(file.metadata().at("seed") == "5");
  CHECK(file.metadata().at("model") == trident::nn::describe(run.trainer.spec()));
  CHECK(file.metadata().at("config") == R"({"heads":2,"hidden":16,"layers":2,"seq":8,"vocab":23})");
  CHECK(trident::gpt2::checkpoint_config(file.metadata(), dir.file("c.safetensors")) == config);
  CHECK(file.metadata().at("optimizer").find("\"weight_decay\":0.1") != std::string::npos);
  CHECK(file.metadata().at("optimizer").find("\"beta2\":0.95") != std::string::npos);
  // The stored values are the model's, bit for bit, every tensor.
  for (const auto& [name, values] : params) {
    INFO(name);
    const auto stored = file.read<float>(name, file.tensor(name).shape);
    CHECK(std::vector<double>(stored.begin(), stored.end()) == values);
  }
  // After one AdamW step from zero, the first moment is (1 - beta1) times the clipped gradient:
  // not zero.
  const auto moment = file.read<float>("optimizer.exp_avg.h.0.mlp.c_fc.weight", {16, 64});
  double moment_norm = 0;
  for (float m : moment) moment_norm += static_cast<double>(m) * m;
  CHECK(moment_norm > 0);
}

TEST_CASE("loading a bad checkpoint names the problem and leaves the model untouched", "[checkpoint]") {
  ScratchDirectory dir;
  const auto data = make_data();
  Gpt2Run run;
  run.step(data);
  const std::string good = dir.file("good.safetensors");
  run.trainer.save(good);
  run.step(data);  // the model moves on: a load that went through would change it back
  const auto before = run.parameters();

  SECTION("another model config") {
    auto other = config;
    other.layers = 3;
    Gpt2Run bigger(5, other);
    CHECK_THROWS_WITH(bigger.load(good), Catch::Contains("L=2 H=2 C=16 T=8 V=23") && Catch::Contains("L=3"));
    // Without the config check, the tensors alone tell the models apart.
    CHECK_THROWS_WITH(bigger.trainer.load(good), Catch::Contains("lacks tensor") && Catch::Contains("h.2."));
    CHECK(bigger.trainer.steps_done() == 0);
  }
  SECTION("a missing tensor") {
    trident::io::SafetensorsFile file(good);
    std::vector<std::vector<float>> keep;
    std::vector<trident::io::HostTensor> tensors;
    for (const auto& t : file.tensors()) {
      if (t.name == "h.1.ln_2.bias") continue;
      keep.push_back(file.read<float>(t.name, t.shape));
      tensors.push_back(trident::io::host_tensor(t.name, t.shape, keep.back()));
    }
    trident::io::write_safetensors(dir.file("missing.safetensors"), tensors, file.metadata());
    CHECK_THROWS_WITH(run.load(dir.file("missing.safetensors")), Catch::Contains("h.1.ln_2.bias"));
  }
  SECTION("a tensor of the wrong shape") {
    trident::io::SafetensorsFile file(good);
    std::vector<std::vector<float>> keep;
    std::vector<trident::io::HostTensor> tensors;
    for (const auto& t : file.tensors()) {
      auto shape = t.shape;
      if (t.name == "optimizer.exp_avg.h.0.mlp.c_fc.weight") shape = {64, 16};  // transposed
      keep.push_back(file.read<float>(t.name, t.shape));
      tensors.push_back(trident::io::host_tensor(t.name, shape, keep.back()));
    }
    trident::io::write_safetensors(dir.file("shape.safetensors"), tensors, file.metadata());
    CHECK_THROWS_WITH(run.load(dir.file("shape.safetensors")),
                      Catch::Contains("optimizer.exp_avg.h.0.mlp.c_fc.weight") && Catch::Contains("[16, 64]"));
  }
  SECTION("a truncated file") {
    const auto size = fs::file_size(good);
    fs::copy_file(good, dir.file("cut.safetensors"));
    fs::resize_file(dir.file("cut.safetensors"), size - 100);
    CHECK_THROWS_AS(run.load(dir.file("cut.safetensors")), trident::Error);
  }
  SECTION("a header that is not JSON") {
    std::ofstream(dir.file("junk.safetensors"), std::ios::binary)
        << std::string("\x10\0\0\0\0\0\0\0{not json}      ", 24);
    CHECK_THROWS_AS(run.load(dir.file("junk.safetensors")), trident::Error);
  }
  CHECK(run.parameters() == before);
  CHECK(run.trainer.steps_done() == 2);
  CHECK(run.trainer.samples_seen() == 2 * batch_size);
}

TEST_CASE("a save that cannot complete leaves no file behind", "[checkpoint]") {
  ScratchDirectory dir;
  Gpt2Run run;
  const std::string target = dir.file("no_such_dir/c.safetensors");
  CHECK_THROWS_AS(run.trainer.save(target), trident::Error);
  CHECK_FALSE(fs::exists(target));
  CHECK(fs::is_empty(dir.path));
}

namespace {

// Sets one element of a parameter to +inf: the next forward's loss is not finite.
void poison(Trainer& trainer, const std::string& name) {
  auto& store = trainer.chunk(0).parameters();
  auto values = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), store.values());
  values(static_cast<std::size_t>(store.info(name).offset)) = std::numeric_limits<float>::infinity();
  Kokkos::deep_copy(store.values(), values);
}

}  // namespace

TEST_CASE("a non-finite step is skipped (nothing changes, counted) or stops naming step and tensor", "[nonfinite]") {
  const auto data = make_data();
  auto skipping = settings();
  skipping.on_nonfinite = trident::train::NonFinitePolicy::skip;
  Trainer trainer(trident::comm::Communicator(MPI_COMM_WORLD, "world"), trident::gpt2::gpt2_spec(config), layout(),
                  skipping);
  const auto batch = [&](std::int64_t step) {
    return trident::gpt2::gpt2_token_batch<float, Space>(data.batch(step - 1), false);
  };
  CHECK_FALSE(trainer.step(batch(1), schedule(1)).skipped);
  poison(trainer, "ln_f.weight");
  const auto before = trainer.global_parameters();
  const auto report = trainer.step(batch(2), schedule(2));
  CHECK(report.skipped);
  CHECK(report.skipped_so_far == 1);
  CHECK(report.step == 2);
  CHECK_FALSE(std::isfinite(report.loss));
  CHECK(trainer.steps_done() == 2);  // the step's data is consumed
  CHECK(trainer.samples_seen() == 2 * batch_size);
  CHECK(trainer.global_parameters() == before);  // bitwise: no update applied (inf included)

  Trainer stopping(trident::comm::Communicator(MPI_COMM_WORLD, "world"), trident::gpt2::gpt2_spec(config), layout(),
                   settings());
  stopping.step(batch(1), schedule(1));
  poison(stopping, "ln_f.weight");
  CHECK_THROWS_WITH(stopping.step(batch(2), schedule(2)),
                    Catch::Contains("trident::train: step 2 has a non-finite loss") &&
                        Catch::Contains("first non-finite gradient: 'wte.weight'"));
  CHECK_THROWS_WITH(trident::train::parse_nonfinite_policy("ignore"),
                    "trident::train: a non-finite step policy is 'stop' or 'skip', got 'ignore'");
}

TEST_CASE("a checkpoint whose tensor bytes changed is refused, naming the tensor", "[checkpoint][checksum]") {
  ScratchDirectory dir;
  const auto data = make_data();
  Gpt2Run run;
  run.step(data);
  const std::string path = dir.file("flip.safetensors");
  run.trainer.save(path);
  const trident::io::SafetensorsFile file(path);
  CHECK(file.verify_checksums() == file.tensors().size());  // every tensor carries one
  const auto& info = file.tensor("h.1.mlp.c_fc.weight");
  const std::uint64_t at = file.data_start() + info.data_begin + 17;
  {
    std::fstream bytes(path, std::ios::in | std::ios::out | std::ios::binary);
    bytes.seekg(static_cast<std::streamoff>(at));
    char c = 0;
    bytes.read(&c, 1);
    c = static_cast<char>(c ^ 0x04);  // one bit
    bytes.seekp(static_cast<std::streamoff>(at));
    bytes.write(&c, 1);
  }
  Gpt2Run other(6);
  const auto untouched = other.parameters();
  CHECK_THROWS_WITH(other.load(path), Catch::Contains("tensor 'h.1.mlp.c_fc.weight' is corrupt"));
  CHECK(other.parameters() == untouched);
  CHECK(other.trainer.steps_done() == 0);
}
