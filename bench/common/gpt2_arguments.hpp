#pragma once
// Command-line sizes shared by the GPT-2 benchmarks: `--name value` pairs with defaults.

#include <trident/gpt2/config.hpp>

#include <cstdlib>
#include <cstring>

namespace trident_bench {

inline int argument(int argc, char** argv, const char* name, int fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], name) == 0) return std::atoi(argv[i + 1]);
  return fallback;
}

// --layers --hidden --heads --seq --vocab, defaulting to the benchmark model
// (L=4, C=256, H=4, T=256, V=4096).
inline trident::gpt2::Gpt2Config gpt2_config_from(int argc, char** argv) {
  trident::gpt2::Gpt2Config config;
  config.layers = argument(argc, argv, "--layers", 4);
  config.hidden = argument(argc, argv, "--hidden", 256);
  config.heads = argument(argc, argv, "--heads", 4);
  config.seq = argument(argc, argv, "--seq", 256);
  config.vocab = argument(argc, argv, "--vocab", 4096);
  return config;
}

}  // namespace trident_bench
