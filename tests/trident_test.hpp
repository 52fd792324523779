#pragma once
// What every trident test includes: Catch2 (v2 single header or v3), MPI, Kokkos, and helpers
// for tests that run on several ranks.

#if __has_include(<catch2/catch_all.hpp>)
#include <catch2/catch_all.hpp>
#else
#include <catch2/catch.hpp>
#endif

#include <mpi.h>

#include <Kokkos_Core.hpp>

#include <string>

namespace trident_test {

inline int world_rank() {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank;
}

inline int world_size() {
  int size = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  return size;
}

// True on every rank when `ok` holds on every rank: lets a test branch on a collective verdict.
inline bool all_ranks(bool ok) {
  int local = ok ? 1 : 0, global = 0;
  MPI_Allreduce(&local, &global, 1, MPI_INT, MPI_LAND, MPI_COMM_WORLD);
  return global != 0;
}

// Relative difference with a floor, as the tests compare layouts "to 1e-5 relative".
inline double relative_difference(double a, double b, double floor = 1e-30) {
  const double scale = std::max({std::abs(a), std::abs(b), floor});
  return std::abs(a - b) / scale;
}

}  // namespace trident_test
