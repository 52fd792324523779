#pragma once
// The machine's GEMM rate, measured on the spot with the library's own matmul: the peak that
// model-FLOPs utilisation (MFU) is reported against on CPUs, where no datasheet number fits.

#include <trident/core/compat.hpp>
#include <trident/ops/matmul.hpp>

#include <Kokkos_Core.hpp>

#include <chrono>
#include <cstdint>

namespace trident::ops {

// GFLOP/s of C[m,n] = A[m,k] B[k,n] in Scalar, best of repeated runs lasting at least
// `min_seconds` in all.
template <class Scalar, class ExecutionSpace>
double measure_gemm_gflops(const ExecutionSpace& space, std::int64_t m, std::int64_t n, std::int64_t k,
                           double min_seconds = 0.25) {
  using Matrix = Kokkos::View<Scalar**, Kokkos::LayoutRight, typename ExecutionSpace::memory_space>;
  Matrix a("trident::gemm_peak::a", m, k), b("trident::gemm_peak::b", k, n), c("trident::gemm_peak::c", m, n);
  Kokkos::deep_copy(space, a, Scalar(0.5));
  Kokkos::deep_copy(space, b, Scalar(0.25));
  ops::matmul(space, 'N', 'N', Scalar(1), a, b, Scalar(0), c);  // warm up
  compat::fence(space, "trident::ops::measure_gemm_gflops");
  const double flops = 2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
  double best = 0, spent = 0;
  while (spent < min_seconds) {
    const auto start = std::chrono::steady_clock::now();
    ops::matmul(space, 'N', 'N', Scalar(1), a, b, Scalar(0), c);
    compat::fence(space, "trident::ops::measure_gemm_gflops");
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    spent += seconds;
    if (seconds > 0 && flops / seconds > best) best = flops / seconds;
  }
  return best * 1e-9;
}

}  // namespace trident::ops
