#pragma once
// Shared by the trident::comm tests: reference values every rank can compute for every other
// rank, and host access to Views of any layout and memory space.

#include "trident_test.hpp"

#include <trident/comm/comm.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

namespace comm_test {

using Space = Kokkos::DefaultExecutionSpace;
using Memory = Space::memory_space;

// What rank r holds at flat (row-major) index i: small integers and halves, exact in float
// and in any sum of a few of them, and not monotone in r, so max and min pick different ranks.
inline double value(int rank, std::int64_t i) {
  return static_cast<double>((rank * 7 + i * 3) % 11) - 5.0 + 0.5 * (rank % 3);
}

// Marks memory a strided view must not touch.
inline constexpr double sentinel = -992.0;  // exact in every floating type the tests use

// Sets an environment variable within one scope (set() as often as needed) and restores what
// was there before, also when a check throws on the way.
class ScopedEnvironment {
 public:
  explicit ScopedEnvironment(const char* name) : m_name(name) {
    if (const char* old = std::getenv(name)) m_old = old, m_had = true;
  }
  ScopedEnvironment(const char* name, const char* value) : ScopedEnvironment(name) { set(value); }
  ~ScopedEnvironment() {
    if (m_had) {
      ::setenv(m_name, m_old.c_str(), 1);
    } else {
      ::unsetenv(m_name);
    }
  }
  ScopedEnvironment(const ScopedEnvironment&) = delete;
  ScopedEnvironment& operator=(const ScopedEnvironment&) = delete;

  void set(const char* value) const { ::setenv(m_name, value, 1); }

 private:
  const char* m_name;
  std::string m_old;
  bool m_had = false;
};

inline trident::comm::Communicator world(const std::string& label = "world") {
  return trident::comm::Communicator(MPI_COMM_WORLD, label);
}

// A contiguous LayoutRight view in the memory of `view` with the same extents (rank 1 to 3).
template <class ViewType>
auto contiguous_like(const ViewType& view) {
  using T = typename ViewType::non_const_value_type;
  using Memory = typename ViewType::memory_space;
  constexpr int rank = static_cast<int>(ViewType::rank);
  static_assert(rank >= 1 && rank <= 3, "comm_test helpers take rank-1 to rank-3 views");
  if constexpr (rank == 1) {
    return Kokkos::View<T*, Kokkos::LayoutRight, Memory>("contiguous", view.extent(0));
  } else if constexpr (rank == 2) {
    return Kokkos::View<T**, Kokkos::LayoutRight, Memory>("contiguous", view.extent(0), view.extent(1));
  } else {
    return Kokkos::View<T***, Kokkos::LayoutRight, Memory>("contiguous", view.extent(0), view.extent(1),
                                                           view.extent(2));
  }
}

// The view's elements in row-major order of its indices, on the host.
template <class ViewType>
std::vector<double> values(const ViewType& view) {
  auto contiguous = contiguous_like(view);
  Kokkos::deep_copy(contiguous, view);
  auto host = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), contiguous);
  std::vector<double> result(host.size());
  for (std::size_t i = 0; i < host.size(); ++i) result[i] = static_cast<double>(host.data()[i]);
  return result;
}

// Whether the automatic transport copies views of MemorySpace through host memory: device
// memory with an MPI that cannot read it.
template <class MemorySpace>
bool staged_automatically() {
  return !Kokkos::SpaceAccessibility<Kokkos::HostSpace, MemorySpace>::accessible && !trident::comm::mpi_is_gpu_aware();
}

// Sets element i (row-major) of `view` to make(i).
template <class ViewType, class Make>
void fill(const ViewType& view, Make make) {
  auto contiguous = contiguous_like(view);
  auto host = Kokkos::create_mirror_view(Kokkos::HostSpace(), contiguous);
  for (std::size_t i = 0; i < host.size(); ++i) {
    host.data()[i] = static_cast<typename ViewType::non_const_value_type>(make(static_cast<std::int64_t>(i)));
  }
  Kokkos::deep_copy(contiguous, host);
  Kokkos::deep_copy(view, contiguous);
}

template <class T, class MemorySpace = Memory>
Kokkos::View<T*, MemorySpace> filled(const std::string& label, std::int64_t n, int rank, std::int64_t offset = 0) {
  Kokkos::View<T*, MemorySpace> view(label, n);
  fill(view, [&](std::int64_t i) { return value(rank, offset + i); });
  return view;
}

// Every other column of a (rows, 2 * cols) matrix whose other columns hold the sentinel: a
// LayoutStride view whose elements are not contiguous.
template <class T, class MemorySpace = Memory>
struct StridedMatrix {
  using Strided = Kokkos::View<T**, Kokkos::LayoutStride, MemorySpace>;
  Kokkos::View<T**, Kokkos::LayoutRight, MemorySpace> base;  // row-major on every space (CUDA's default is not)
  Strided view;

  StridedMatrix(const std::string& label, std::size_t rows, std::size_t cols) : base(label, rows, 2 * cols) {
    Kokkos::deep_copy(base, static_cast<T>(sentinel));
    view = Strided(base.data(), Kokkos::LayoutStride(rows, 2 * cols, cols, 2));
  }

  // How many of the columns the view skips no longer hold the sentinel.
  int untouched_violations() const {
    const auto all = values(base);
    int violations = 0;
    // Row length 2 * cols is even, so odd flat indices are exactly the odd columns.
    for (std::size_t i = 1; i < all.size(); i += 2) violations += all[i] != sentinel;
    return violations;
  }
};

// value(rank, offset + i) for i < n: what one rank holds.
inline std::vector<double> own_values(int rank, std::int64_t n, std::int64_t offset = 0) {
  std::vector<double> result(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) result[static_cast<std::size_t>(i)] = value(rank, offset + i);
  return result;
}

// The reduction over ranks 0..size-1 of value(r, offset + i), i < n, computed on the host.
inline std::vector<double> expected_reduction(int size, std::int64_t n,
                                              trident::comm::ReduceOp op = trident::comm::ReduceOp::sum,
                                              std::int64_t offset = 0) {
  auto result = own_values(0, n, offset);
  for (int r = 1; r < size; ++r) {
    const auto other = own_values(r, n, offset);
    for (std::size_t i = 0; i < result.size(); ++i) {
      switch (op) {
        case trident::comm::ReduceOp::sum:
          result[i] += other[i];
          break;
        case trident::comm::ReduceOp::max:
          result[i] = std::max(result[i], other[i]);
          break;
        case trident::comm::ReduceOp::min:
          result[i] = std::min(result[i], other[i]);
          break;
      }
    }
  }
  return result;
}

// The concatenation over ranks of value(r, i), i < counts[r].
inline std::vector<double> expected_concatenation(const std::vector<int>& counts) {
  std::vector<double> result;
  for (std::size_t r = 0; r < counts.size(); ++r) {
    const auto block = own_values(static_cast<int>(r), counts[r]);
    result.insert(result.end(), block.begin(), block.end());
  }
  return result;
}

// Number of positions where `actual` differs from `expected` (exact: the values are exact).
inline int mismatches(const std::vector<double>& actual, const std::vector<double>& expected) {
  if (actual.size() != expected.size()) return static_cast<int>(std::max(actual.size(), expected.size()));
  int count = 0;
  for (std::size_t i = 0; i < actual.size(); ++i) count += actual[i] != expected[i];
  return count;
}

}  // namespace comm_test
