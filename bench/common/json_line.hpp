#pragma once
// One JSON line of a benchmark, prefixed with the execution space it ran on, its concurrency
// and the widest host vector instructions it was compiled for (TRIDENT_NATIVE_ARCH), so that
// lines from builds against different Kokkos backends (Serial, OpenMP at 1 or 2 threads, CUDA)
// and flags can be put side by side in one table.

#include <Kokkos_Core.hpp>

#include <cstdio>

namespace trident_bench {

// What the host loops (activations, norms, AdamW) vectorise with; OpenBLAS picks its own at run time.
constexpr const char* host_simd() {
#if defined(__AVX512F__)
  return "avx512";
#elif defined(__AVX2__)
  return "avx2";
#elif defined(__AVX__)
  return "avx";
#elif defined(__SSE2__)
  return "sse2";
#elif defined(__ARM_NEON)
  return "neon";
#else
  return "scalar";
#endif
}

// print_json<Space>("{\"bench\":\"x\",\"ms\":%.3f}\n", ms) prints
// {"backend":"OpenMP","concurrency":2,"host_simd":"avx512","bench":"x","ms":...}
template <class Space, class... Args>
void print_json(const char* format, Args... args) {
  char line[4096];
  std::snprintf(line, sizeof line, format, args...);
  std::printf("{\"backend\":\"%s\",\"concurrency\":%d,\"host_simd\":\"%s\",%s", Space::name(),
              static_cast<int>(Space().concurrency()), host_simd(), line[0] == '{' ? line + 1 : line);
  std::fflush(stdout);
}

}  // namespace trident_bench
