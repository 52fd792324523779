#pragma once
// One JSON line of a benchmark, prefixed with the execution space it ran on and its
// concurrency, so that lines from builds against different Kokkos backends (Serial, OpenMP at
// 1 or 2 threads, CUDA) can be put side by side in one table.

#include <Kokkos_Core.hpp>

#include <cstdio>

namespace trident_bench {

// print_json<Space>("{\"bench\":\"x\",\"ms\":%.3f}\n", ms) prints
// {"backend":"OpenMP","concurrency":2,"bench":"x","ms":...}
template <class Space, class... Args>
void print_json(const char* format, Args... args) {
  char line[4096];
  std::snprintf(line, sizeof line, format, args...);
  std::printf("{\"backend\":\"%s\",\"concurrency\":%d,%s", Space::name(), static_cast<int>(Space().concurrency()),
              line[0] == '{' ? line + 1 : line);
  std::fflush(stdout);
}

}  // namespace trident_bench
