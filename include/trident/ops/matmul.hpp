#pragma once
// C = alpha * op(A) * op(B) + beta * C on rank-2 views, through KokkosBlas::gemm.
//
// On host memory with LayoutRight float or double views (and LayoutRight subviews that keep
// whole rows, such as subview(x, pair, ALL) or subview(x4, b, h, ALL, ALL)), Kokkos Kernels
// hands the product to the BLAS library (sgemm/dgemm, as C^T = op(B)^T op(A)^T in column-major
// terms); on devices to cuBLAS/rocBLAS when Kokkos Kernels was built with them. Strided views
// are accepted but take Kokkos Kernels' own, slower kernel.
//
// Any of A, B and C may hold bfloat16 or float16 (the others float). On CUDA with cuBLAS, A and
// B of one 16-bit type with C of that type or float run on the vendor's 16-bit GEMM
// (detail/vendor_gemm.hpp). Otherwise the 16-bit operands are widened into float copies,
// multiplied as floats (accumulating in float, as tensor cores do) and C is rounded once when
// stored. Either way the result is the float product of the same values, rounded.

#include <trident/core/compat.hpp>
#include <trident/core/error.hpp>
#include <trident/core/half_precision.hpp>
#include <trident/core/profiling.hpp>
#include <trident/ops/detail/checks.hpp>
#include <trident/ops/detail/launch.hpp>
#include <trident/ops/detail/vendor_gemm.hpp>

#include <KokkosKernels_config.h>
#include <KokkosBlas3_gemm.hpp>
#include <Kokkos_Core.hpp>

#include <cstdint>

namespace trident {
namespace ops {
namespace detail {

inline bool is_valid_trans(char trans) {
  return trans == 'N' || trans == 'n' || trans == 'T' || trans == 't' || trans == 'C' || trans == 'c';
}

inline bool is_transposed(char trans) {
  return !(trans == 'N' || trans == 'n');
}

template <class CView>
struct ScaleMatrix {
  CView m_c;
  compute_t<typename CView::non_const_value_type> m_beta;
  KOKKOS_FUNCTION void operator()(const std::int64_t i, const std::int64_t j) const {
    m_c(i, j) = m_beta == 0 ? decltype(m_beta)(0) : m_beta * m_c(i, j);
  }
};

template <class View>
constexpr bool holds_half_precision() {
  return is_half_precision_v<typename View::non_const_value_type>;
}

template <class ToView, class FromView>
struct CopyElements {
  ToView m_to;
  FromView m_from;
  KOKKOS_FUNCTION void operator()(const std::int64_t i, const std::int64_t j) const { m_to(i, j) = m_from(i, j); }
};

// `view` itself where it holds float; otherwise a float copy of it.
template <class ExecutionSpace, class View>
auto float_operand(const ExecutionSpace& space, const View& view) {
  if constexpr (holds_half_precision<View>()) {
    using Float = Kokkos::View<float**, Kokkos::LayoutRight, typename View::memory_space>;
    Float copy(Kokkos::view_alloc(Kokkos::WithoutInitializing, "trident::ops::matmul_widened"), view.extent(0),
               view.extent(1));
    for_each_element(space, "trident::ops::matmul_widen", extent(view, 0), extent(view, 1),
                     CopyElements<Float, View>{copy, view});
    return copy;
  } else {
    return view;
  }
}

}  // namespace detail

template <class ExecutionSpace, class AView, class BView, class CView>
void matmul(const ExecutionSpace& space, char trans_a, char trans_b,
            compute_t<typename CView::non_const_value_type> alpha, const AView& a, const BView& b,
            compute_t<typename CView::non_const_value_type> beta, const CView& c) {
  detail::assert_accessible<ExecutionSpace, AView, BView, CView>();
  static_assert(
      static_cast<int>(AView::rank) == 2 && static_cast<int>(BView::rank) == 2 && static_cast<int>(CView::rank) == 2,
      "trident::ops::matmul takes rank-2 views");
  ScopedRegion region("trident::ops::matmul");
  require_argument(detail::is_valid_trans(trans_a) && detail::is_valid_trans(trans_b),
                   "trident::ops::matmul: trans_a = '", trans_a, "' and trans_b = '", trans_b,
                   "' must each be 'N' or 'T'");
  const bool a_t = detail::is_transposed(trans_a), b_t = detail::is_transposed(trans_b);
  const std::int64_t m = detail::extent(a, a_t ? 1 : 0), k = detail::extent(a, a_t ? 0 : 1);
  const std::int64_t kb = detail::extent(b, b_t ? 1 : 0), n = detail::extent(b, b_t ? 0 : 1);
  require_argument(k == kb && detail::extent(c, 0) == m && detail::extent(c, 1) == n,
                   "trident::ops::matmul: op(A) is [", m, ", ", k, "], op(B) is [", kb, ", ", n, "] and C is [",
                   c.extent(0), ", ", c.extent(1), "] (trans_a = '", trans_a, "', trans_b = '", trans_b, "')");
  if (m == 0 || n == 0) return;
  if (k == 0) {  // Kokkos Kernels returns early here without applying beta.
    detail::for_each_element(space, "trident::ops::matmul_scale", m, n, detail::ScaleMatrix<CView>{c, beta});
    return;
  }
  if constexpr (detail::holds_half_precision<AView>() || detail::holds_half_precision<BView>() ||
                detail::holds_half_precision<CView>()) {
    if (detail::vendor_gemm(space, a_t, b_t, m, n, k, alpha, a, b, beta, c)) return;
    const auto a_float = detail::float_operand(space, a);
    const auto b_float = detail::float_operand(space, b);
    if constexpr (detail::holds_half_precision<CView>()) {
      // C's old values matter only with beta != 0; the rounding happens once, into C.
      using Float = Kokkos::View<float**, Kokkos::LayoutRight, typename CView::memory_space>;
      const Float c_float = beta == 0
                                ? Float(Kokkos::view_alloc(Kokkos::WithoutInitializing, "trident::ops::matmul_widened"),
                                        c.extent(0), c.extent(1))
                                : detail::float_operand(space, c);
      matmul(space, trans_a, trans_b, alpha, a_float, b_float, beta, c_float);
      detail::for_each_element(space, "trident::ops::matmul_round", m, n,
                               detail::CopyElements<CView, Float>{c, c_float});
    } else {
      matmul(space, trans_a, trans_b, alpha, a_float, b_float, beta, c);
    }
  } else {
    const char mode_a[2] = {a_t ? 'T' : 'N', '\0'}, mode_b[2] = {b_t ? 'T' : 'N', '\0'};
#if defined(KOKKOSKERNELS_VERSION) && KOKKOSKERNELS_VERSION >= 40100
    KokkosBlas::gemm(space, mode_a, mode_b, alpha, a, b, beta, c);
#else
    // Older Kokkos Kernels run gemm on the default instance: order it after, and before, the
    // work already queued on `space` (both fences are free on Serial).
    compat::fence(space, "trident::ops::matmul: before gemm");
    KokkosBlas::gemm(mode_a, mode_b, alpha, a, b, beta, c);
    compat::fence(typename CView::execution_space(), "trident::ops::matmul: after gemm");
#endif
  }
}

}  // namespace ops
}  // namespace trident
