#pragma once
// Compile-time and run-time checks shared by the operators: the execution space can reach
// every view, and shapes agree (messages name the operation and the extents).

#include <trident/core/error.hpp>

#include <Kokkos_Core.hpp>

#include <cstdint>
#include <type_traits>

namespace trident {
namespace ops {
namespace detail {

template <class ExecutionSpace, class... Views>
constexpr void assert_accessible() {
  static_assert(Kokkos::is_execution_space<ExecutionSpace>::value,
                "trident::ops: the first argument must be a Kokkos execution space");
  static_assert((Kokkos::SpaceAccessibility<ExecutionSpace, typename Views::memory_space>::accessible && ...),
                "trident::ops: the execution space cannot access the memory of every view");
}

// An empty view (extent 0 or default-constructed) means "not needed": a bias that is absent,
// an input gradient nobody asked for.
template <class View>
bool is_empty(const View& view) {
  return view.size() == 0;
}

template <class View>
std::int64_t extent(const View& view, unsigned dimension) {
  return static_cast<std::int64_t>(view.extent(dimension));
}

// Throws "<op>: <what> is [r, c] but must be [rows, cols]" unless the rank-2 view has that shape.
template <class View>
void require_shape(const View& view, std::int64_t rows, std::int64_t cols, const char* op, const char* name) {
  static_assert(static_cast<int>(View::rank) == 2, "trident::ops: expected a rank-2 view");
  require_argument(extent(view, 0) == rows && extent(view, 1) == cols, op, ": ", name, " is [", view.extent(0), ", ",
                   view.extent(1), "] but must be [", rows, ", ", cols, "]");
}

template <class View>
void require_length(const View& view, std::int64_t length, const char* op, const char* name) {
  static_assert(static_cast<int>(View::rank) == 1, "trident::ops: expected a rank-1 view");
  require_argument(extent(view, 0) == length, op, ": ", name, " has ", view.extent(0), " elements but must have ",
                   length);
}

template <class View, class Other>
void require_same_shape(const View& view, const Other& other, const char* op, const char* name,
                        const char* other_name) {
  static_assert(static_cast<int>(View::rank) == static_cast<int>(Other::rank), "trident::ops: ranks differ");
  bool same = true;
  for (unsigned d = 0; d < static_cast<unsigned>(View::rank); ++d) same = same && view.extent(d) == other.extent(d);
  if (same) return;
  if constexpr (static_cast<int>(View::rank) == 1) {
    require_argument(false, op, ": ", name, " has ", view.extent(0), " elements but ", other_name, " has ",
                     other.extent(0));
  } else {
    require_argument(false, op, ": ", name, " is [", view.extent(0), ", ", view.extent(1), "] but ", other_name,
                     " is [", other.extent(0), ", ", other.extent(1), "]");
  }
}

// Kernels that walk a row through a raw pointer need contiguous rows.
template <class View>
void require_row_major(const View& view, const char* op, const char* name) {
  static_assert(std::is_same<typename View::array_layout, Kokkos::LayoutRight>::value,
                "trident::ops: this operation takes LayoutRight views");
  require_argument(view.extent(1) <= 1 || view.stride(1) == 1, op, ": ", name, " must have unit column stride");
}

}  // namespace detail
}  // namespace ops
}  // namespace trident
