#pragma once
// The execution spaces this Kokkos build enables, as a type list for Catch2's
// TEMPLATE_LIST_TEST_CASE: one test binary runs each case on Serial and OpenMP, or on Serial
// and CUDA, and so on. Debian's Kokkos gives Serial alone.

#include <Kokkos_Core.hpp>

#include <tuple>
#include <utility>

namespace trident_test {

using ExecutionSpaces = decltype(std::tuple_cat(
#if defined(KOKKOS_ENABLE_SERIAL)
    std::declval<std::tuple<Kokkos::Serial>>(),
#endif
#if defined(KOKKOS_ENABLE_OPENMP)
    std::declval<std::tuple<Kokkos::OpenMP>>(),
#endif
#if defined(KOKKOS_ENABLE_THREADS)
    std::declval<std::tuple<Kokkos::Threads>>(),
#endif
#if defined(KOKKOS_ENABLE_CUDA)
    std::declval<std::tuple<Kokkos::Cuda>>(),
#endif
#if defined(KOKKOS_ENABLE_HIP)
    std::declval<std::tuple<Kokkos::HIP>>(),
#endif
    std::declval<std::tuple<>>()));

static_assert(std::tuple_size<ExecutionSpaces>::value > 0, "the Kokkos build enables no execution space tests know");

// A scalar type paired with an execution space: the parameter of a test that runs for every
// scalar on every space.
template <class Scalar, class Space>
struct ScalarOn {
  using scalar = Scalar;
  using space = Space;
};

namespace detail {
template <class Scalar, class Spaces>
struct OnEach;
template <class Scalar, class... Spaces>
struct OnEach<Scalar, std::tuple<Spaces...>> {
  using type = std::tuple<ScalarOn<Scalar, Spaces>...>;
};
}  // namespace detail

// Every Scalar on every enabled execution space.
template <class... Scalars>
using ScalarsOnExecutionSpaces =
    decltype(std::tuple_cat(std::declval<typename detail::OnEach<Scalars, ExecutionSpaces>::type>()...));

using FloatAndDoubleOnEverySpace = ScalarsOnExecutionSpaces<float, double>;

// "Serial", "OpenMP", "Cuda", ... for messages.
template <class Space>
const char* space_name() {
  return Space::name();
}

}  // namespace trident_test
