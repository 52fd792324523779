// Saving at step k, loading and continuing reproduces the uninterrupted run bitwise; bad
// checkpoints give errors naming what is wrong and leave the model untouched.

#include "trident_test.hpp"

#include <trident/data/synthetic.hpp>
#include <trident/io/safetensors.hpp>
#include <trident/gpt2/trainer.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

namespace {

using Space = Kokkos::DefaultExecutionSpace;
using Trainer = trident::gpt2::Gpt2Trainer<float, Space>;
namespace fs = std::filesystem;

const trident::gpt2::Gpt2Config config{2, 2, 16, 8, 23};

trident::gpt2::TrainerSettings settings() {
  trident::gpt2::TrainerSettings s;
  s.batch = 4;
  s.micro_batch = 2;
  s.seq = 8;
  s.grad_clip = 0.5;  // small enough to clip: the clipped path is part of what must resume exactly
  s.schedule = {3e-3, 2, 8, 0.1};
  return s;
}

trident::data::BatchLoader make_data() {
  trident::data::SyntheticMarkovLanguage language(config.vocab, 3, 11);
  return trident::data::BatchLoader(language.generate(4096), 4, 8);
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

std::vector<float> parameters_of(Trainer& trainer) {
  auto host = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), trainer.model().parameters().values());
  return std::vector<float>(host.data(), host.data() + host.size());
}

}  // namespace

TEST_CASE("save at step k, load, continue: bitwise the losses of the run that never stopped", "[checkpoint]") {
  ScratchDirectory dir;
  const auto data = make_data();
  Trainer straight(Space(), config, settings(), 5);
  std::vector<double> expected;
  for (int s = 0; s < 8; ++s) expected.push_back(straight.train_step(data).loss);

  Trainer first(Space(), config, settings(), 5);
  for (int s = 0; s < 3; ++s) CHECK(first.train_step(data).loss == expected[static_cast<std::size_t>(s)]);
  first.save(dir.file("step3.safetensors"));

  Trainer resumed(Space(), config, settings(), 999);  // a different seed: everything must come from the file
  resumed.load(dir.file("step3.safetensors"));
  CHECK(resumed.progress().step == 3);
  CHECK(resumed.progress().tokens_consumed == 3 * 4 * 8);
  CHECK(resumed.progress().seed == 5);
  for (int s = 3; s < 8; ++s) CHECK(resumed.train_step(data).loss == expected[static_cast<std::size_t>(s)]);
  CHECK(parameters_of(resumed) == parameters_of(straight));
}

TEST_CASE("the checkpoint holds Hugging Face names, AdamW moments and metadata", "[checkpoint]") {
  ScratchDirectory dir;
  const auto data = make_data();
  Trainer trainer(Space(), config, settings(), 5);
  trainer.train_step(data);
  trainer.save(dir.file("c.safetensors"));
  trident::io::SafetensorsFile file(dir.file("c.safetensors"));
  CHECK(file.tensor("wte.weight").shape == trident::io::Shape{23, 16});
  CHECK(file.tensor("h.1.attn.c_attn.weight").shape == trident::io::Shape{16, 48});
  CHECK(file.tensor("h.0.mlp.c_proj.weight").shape == trident::io::Shape{64, 16});
  CHECK(file.tensor("optimizer.exp_avg.ln_f.bias").shape == trident::io::Shape{16});
  CHECK(file.tensor("optimizer.exp_avg_sq.wpe.weight").shape == trident::io::Shape{8, 16});
  CHECK(file.tensors().size() == 3 * trainer.model().parameters().tensors().size());
  CHECK(file.metadata().at("step") == "1");
  CHECK(file.metadata().at("config") == R"({"heads":2,"hidden":16,"layers":2,"seq":8,"vocab":23})");
  CHECK(file.metadata().at("optimizer").find("\"weight_decay\":0.1") != std::string::npos);
  // The stored values are the model's, bit for bit.
  const auto wte = file.read<float>("wte.weight", {23, 16});
  const auto params = parameters_of(trainer);
  CHECK(std::vector<float>(params.begin(), params.begin() + 23 * 16) == wte);
}

TEST_CASE("loading a bad checkpoint names the problem and leaves the model untouched", "[checkpoint]") {
  ScratchDirectory dir;
  const auto data = make_data();
  Trainer trainer(Space(), config, settings(), 5);
  trainer.train_step(data);
  const std::string good = dir.file("good.safetensors");
  trainer.save(good);
  const auto before = parameters_of(trainer);

  SECTION("another model config") {
    auto other = config;
    other.layers = 3;
    Trainer bigger(Space(), other, settings(), 5);
    CHECK_THROWS_WITH(bigger.load(good), Catch::Contains("L=2 H=2 C=16 T=8 V=23") && Catch::Contains("L=3"));
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
    CHECK_THROWS_WITH(trainer.load(dir.file("missing.safetensors")), Catch::Contains("h.1.ln_2.bias"));
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
    CHECK_THROWS_WITH(trainer.load(dir.file("shape.safetensors")),
                      Catch::Contains("optimizer.exp_avg.h.0.mlp.c_fc.weight") && Catch::Contains("[16, 64]"));
  }
  SECTION("a truncated file") {
    const auto size = fs::file_size(good);
    fs::copy_file(good, dir.file("cut.safetensors"));
    fs::resize_file(dir.file("cut.safetensors"), size - 100);
    CHECK_THROWS_AS(trainer.load(dir.file("cut.safetensors")), trident::Error);
  }
  SECTION("a header that is not JSON") {
    std::ofstream(dir.file("junk.safetensors"), std::ios::binary)
        << std::string("\x10\0\0\0\0\0\0\0{not json}      ", 24);
    CHECK_THROWS_AS(trainer.load(dir.file("junk.safetensors")), trident::Error);
  }
  CHECK(parameters_of(trainer) == before);
  CHECK(trainer.progress().step == 1);
}

TEST_CASE("a save that cannot complete leaves no file behind", "[checkpoint]") {
  ScratchDirectory dir;
  Trainer trainer(Space(), config, settings(), 5);
  const std::string target = dir.file("no_such_dir/c.safetensors");
  CHECK_THROWS_AS(trainer.save(target), trident::Error);
  CHECK_FALSE(fs::exists(target));
  CHECK(fs::is_empty(dir.path));
}

namespace {

// Sets one element of a parameter to +inf: the next forward's loss is not finite.
void poison(Trainer& trainer, const std::string& name) {
  auto& store = trainer.model().parameters();
  auto values = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), store.values());
  values(static_cast<std::size_t>(store.info(name).offset)) = std::numeric_limits<float>::infinity();
  Kokkos::deep_copy(store.values(), values);
}

}  // namespace

TEST_CASE("a non-finite step is skipped (nothing changes, counted) or stops naming step and tensor", "[nonfinite]") {
  const auto data = make_data();
  auto skipping = settings();
  skipping.on_nonfinite = trident::gpt2::NonFinitePolicy::skip;
  Trainer trainer(Space(), config, skipping, 5);
  CHECK_FALSE(trainer.train_step(data).skipped);
  poison(trainer, "ln_f.weight");
  const auto before = parameters_of(trainer);
  const auto report = trainer.train_step(data);
  CHECK(report.skipped);
  CHECK(report.skipped_so_far == 1);
  CHECK(report.step == 2);
  CHECK(trainer.progress().step == 2);      // the step's data is consumed
  CHECK(parameters_of(trainer) == before);  // bitwise: no update applied (inf included)

  Trainer stopping(Space(), config, settings(), 5);
  stopping.train_step(data);
  poison(stopping, "ln_f.weight");
  CHECK_THROWS_WITH(stopping.train_step(data), Catch::Contains("trident::train: step 2 has a non-finite loss") &&
                                                   Catch::Contains("first non-finite gradient: 'wte.weight'"));
  CHECK_THROWS_WITH(trident::gpt2::parse_nonfinite_policy("ignore"),
                    "trident::train: a non-finite step policy is 'stop' or 'skip', got 'ignore'");
}

TEST_CASE("a checkpoint whose tensor bytes changed is refused, naming the tensor", "[checkpoint][checksum]") {
  ScratchDirectory dir;
  const auto data = make_data();
  Trainer trainer(Space(), config, settings(), 5);
  trainer.train_step(data);
  const std::string path = dir.file("flip.safetensors");
  trainer.save(path);
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
  Trainer other(Space(), config, settings(), 6);
  const auto untouched = parameters_of(other);
  CHECK_THROWS_WITH(other.load(path), Catch::Contains("tensor 'h.1.mlp.c_fc.weight' is corrupt"));
  CHECK(parameters_of(other) == untouched);
}
