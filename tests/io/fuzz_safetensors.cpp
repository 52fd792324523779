// Fuzz target for the safetensors reader: any bytes either load (header, checksums, every
// tensor read whole and as slices) or are refused with a trident error; nothing else may
// happen (no crash, no other exception, no hang, no unbounded allocation).
//
// Built with clang and -DTRIDENT_ENABLE_FUZZ=ON it is a libFuzzer target:
//   build-fuzz/tests/io/fuzz_safetensors -max_total_time=60 corpus/
// Otherwise it is a program that runs a fixed, seeded set of mutations of valid files (bit
// flips, byte edits, truncations, insertions, header rewrites): the short run of the tests.

#include <trident/core/error.hpp>
#include <trident/io/safetensors.hpp>

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>
#include <vector>

namespace {

std::string scratch_path() {
  static const std::string path = "/tmp/trident-fuzz-" + std::to_string(::getpid()) + ".safetensors";
  return path;
}

void write_file(const std::string& path, const std::uint8_t* data, std::size_t size) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
}

// Everything a checkpoint loader does with a file.
void exercise(const std::string& path) {
  trident::io::SafetensorsFile file(path);
  file.verify_checksums();
  for (const auto& info : file.tensors()) {
    std::uint64_t count = 0;
    if (!trident::io::checked_element_count(info.shape, count) || count > (1u << 20)) continue;
    std::vector<double> values(static_cast<std::size_t>(count));
    if (info.dtype == trident::io::DType::I32 || info.dtype == trident::io::DType::I64) {
      std::vector<std::int64_t> integers(static_cast<std::size_t>(count));
      file.read(info.name, info.shape, integers.data());
    } else {
      file.read(info.name, info.shape, values.data());
    }
    if (info.shape.size() == 1 && count >= 2) {
      file.read_slice(info.name, info.shape, trident::io::IndexRange{1, static_cast<std::int64_t>(count) - 1},
                      values.data());
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  write_file(scratch_path(), data, size);
  try {
    exercise(scratch_path());
  } catch (const trident::Error&) {
    // refused with a message: the expected outcome for most inputs
  } catch (const trident::InvalidArgument&) {
    // refused as a bad argument (a shape the reader cannot hold)
  }
  return 0;
}

#ifndef TRIDENT_LIBFUZZER
namespace {

std::vector<std::uint8_t> read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<std::uint8_t>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Valid files to mutate: a checkpoint-like file with checksums, and a small mixed-dtype one.
std::vector<std::vector<std::uint8_t>> seeds() {
  std::vector<float> w(24), b(6);
  std::vector<double> d(5);
  std::vector<std::int64_t> i64 = {1, -2, 3};
  for (std::size_t k = 0; k < w.size(); ++k) w[k] = 0.25f * static_cast<float>(k) - 2.0f;
  for (std::size_t k = 0; k < b.size(); ++k) b[k] = static_cast<float>(k);
  for (std::size_t k = 0; k < d.size(); ++k) d[k] = 1.0 / (1.0 + static_cast<double>(k));
  const std::string path = scratch_path() + ".seed";
  std::vector<std::vector<std::uint8_t>> files;
  trident::io::write_safetensors(
      path, {trident::io::host_tensor("h.0.weight", {4, 6}, w), trident::io::host_tensor("h.0.bias", {6}, b)},
      {{"step", "3"}, {"config", "{\"layers\":1}"}});
  files.push_back(read_all(path));
  trident::io::write_safetensors(path,
                                 {trident::io::host_tensor("d", {5}, d), trident::io::host_tensor("i", {3}, i64)});
  files.push_back(read_all(path));
  std::remove(path.c_str());
  return files;
}

}  // namespace

// usage: fuzz_safetensors [mutations per seed, default 2000]
int main(int argc, char** argv) {
  const int mutations = argc > 1 ? std::atoi(argv[1]) : 2000;
  std::mt19937_64 random(12345);
  std::size_t runs = 0;
  for (const auto& seed : seeds()) {
    LLVMFuzzerTestOneInput(seed.data(), seed.size());  // the valid file itself
    for (std::size_t cut = 0; cut <= seed.size(); cut += 1 + seed.size() / 97, ++runs)
      LLVMFuzzerTestOneInput(seed.data(), cut);  // truncations
    for (int m = 0; m < mutations; ++m, ++runs) {
      std::vector<std::uint8_t> bytes = seed;
      const int edits = 1 + static_cast<int>(random() % 4);
      for (int e = 0; e < edits && !bytes.empty(); ++e) {
        const std::size_t at = random() % bytes.size();
        switch (random() % 5) {
          case 0:  // flip a bit
            bytes[at] ^= static_cast<std::uint8_t>(1u << (random() % 8));
            break;
          case 1:  // any byte
            bytes[at] = static_cast<std::uint8_t>(random());
            break;
          case 2:  // a JSON-significant character
            bytes[at] = static_cast<std::uint8_t>("{}[],:\"0123456789-e"[random() % 19]);
            break;
          case 3:  // insert
            bytes.insert(bytes.begin() + static_cast<std::ptrdiff_t>(at), static_cast<std::uint8_t>(random()));
            break;
          default:  // delete
            bytes.erase(bytes.begin() + static_cast<std::ptrdiff_t>(at));
        }
      }
      LLVMFuzzerTestOneInput(bytes.data(), bytes.size());
    }
  }
  std::remove(scratch_path().c_str());
  std::printf("fuzz_safetensors: %zu mutated inputs, each loaded or refused with trident::Error\n", runs);
  return 0;
}
#endif
