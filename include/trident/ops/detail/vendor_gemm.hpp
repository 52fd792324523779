#pragma once
// Products straight on the GPU vendor's BLAS where Kokkos Kernels has no call for them:
// cublasGemmEx and cublasGemmStridedBatchedEx in a CUDA build whose Kokkos Kernels has cuBLAS.
// - 16-bit products on the vendor's 16-bit GEMM (tensor cores, float accumulation): A and B of
//   one 16-bit type, C of that type or float. The result is the float product of the same
//   values, as matmul's widened path gives, summed in the device's order: C may differ from it
//   in its last bit.
// - Many equal products at a constant distance from each other in one call (the causal blocks
//   of every attention head), in float or double as one SGEMM/DGEMM each would compute them.
// Elsewhere, or for other operands, `vendor_gemm` declines and the caller runs its own path.

#include <trident/core/error.hpp>
#include <trident/core/half_precision.hpp>

#include <KokkosKernels_config.h>
#include <Kokkos_Core.hpp>

#include <cstdint>
#include <type_traits>

#if defined(KOKKOS_ENABLE_CUDA) && defined(KOKKOSKERNELS_ENABLE_TPL_CUBLAS)
#include <cublas_v2.h>
#define TRIDENT_VENDOR_GEMM 1
#endif

namespace trident {
namespace ops {

// Whether products on `ExecutionSpace` may go straight to the vendor's BLAS.
template <class ExecutionSpace>
constexpr bool has_vendor_gemm() {
#if defined(TRIDENT_VENDOR_GEMM)
  return std::is_same<ExecutionSpace, Kokkos::Cuda>::value;
#else
  return false;
#endif
}

namespace detail {

// How many products one vendor_gemm call makes, and the distance (in elements) from each
// product's operands to the next one's.
struct GemmBatch {
  std::int64_t count = 1, stride_a = 0, stride_b = 0, stride_c = 0;
};

#if defined(TRIDENT_VENDOR_GEMM)

template <class T>
constexpr cudaDataType_t cuda_data_type() {
  if constexpr (std::is_same<T, bfloat16>::value) {
    return CUDA_R_16BF;
  } else if constexpr (std::is_same<T, float16>::value) {
    return CUDA_R_16F;
  } else if constexpr (std::is_same<T, double>::value) {
    return CUDA_R_64F;
  } else {
    static_assert(std::is_same<T, float>::value, "cuda_data_type: bfloat16, float16, float or double");
    return CUDA_R_32F;
  }
}

// One handle for the process (one device per rank); never destroyed, since the CUDA context
// may be gone by the time static destructors run.
inline cublasHandle_t cublas_handle() {
  static const cublasHandle_t handle = [] {
    cublasHandle_t made = nullptr;
    const cublasStatus_t status = cublasCreate(&made);
    if (status != CUBLAS_STATUS_SUCCESS)
      throw Error(
          trident::detail::concat("trident::ops::matmul: cublasCreate failed with status ", static_cast<int>(status)));
    return made;
  }();
  return handle;
}

// The distance between rows of a rank-2 view whose rows are contiguous; 0 where they are not.
template <class View>
std::int64_t row_pitch(const View& view) {
  if (view.extent(1) > 1 && view.stride(1) != 1) return 0;
  const std::int64_t pitch = view.extent(0) > 1 ? static_cast<std::int64_t>(view.stride(0)) : view.extent(1);
  return pitch >= static_cast<std::int64_t>(view.extent(1)) && pitch > 0 ? pitch : 0;
}

#endif

// Which operand types the vendor's GEMM takes: 16-bit A and B of one type with C of that type
// or float, or A, B and C all float or all double.
template <class A, class B, class C>
constexpr bool vendor_gemm_types() {
  if constexpr (!std::is_same<A, B>::value) {
    return false;
  } else if constexpr (is_half_precision_v<A>) {
    return std::is_same<C, A>::value || std::is_same<C, float>::value;
  } else {
    return std::is_same<C, A>::value && (std::is_same<A, float>::value || std::is_same<A, double>::value);
  }
}

// C = alpha op(A) op(B) + beta C (each of `batch.count` products, the operands of product p at
// p times the batch's strides from the views') on the vendor's BLAS, where the build, the space
// and the operands allow it; returns false, having done nothing, otherwise.
template <class ExecutionSpace, class AView, class BView, class CView, class Scalar>
bool vendor_gemm(const ExecutionSpace& space, bool a_t, bool b_t, std::int64_t m, std::int64_t n, std::int64_t k,
                 Scalar alpha, const AView& a, const BView& b, Scalar beta, const CView& c,
                 const GemmBatch& batch = {}) {
#if defined(TRIDENT_VENDOR_GEMM)
  using A = typename AView::non_const_value_type;
  using C = typename CView::non_const_value_type;
  if constexpr (has_vendor_gemm<ExecutionSpace>() && vendor_gemm_types<A, typename BView::non_const_value_type, C>()) {
    const std::int64_t lda = row_pitch(a), ldb = row_pitch(b), ldc = row_pitch(c);
    if (lda == 0 || ldb == 0 || ldc == 0) return false;
    using Compute = std::conditional_t<std::is_same<A, double>::value, double, float>;
    const Compute alpha_c = static_cast<Compute>(alpha), beta_c = static_cast<Compute>(beta);
    const cublasComputeType_t compute = std::is_same<A, double>::value ? CUBLAS_COMPUTE_64F : CUBLAS_COMPUTE_32F;
    const cublasHandle_t handle = cublas_handle();
    cublasStatus_t status = cublasSetStream(handle, space.cuda_stream());
    // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: the same views, swapped.
    const cublasOperation_t op_a = a_t ? CUBLAS_OP_T : CUBLAS_OP_N, op_b = b_t ? CUBLAS_OP_T : CUBLAS_OP_N;
    if (status == CUBLAS_STATUS_SUCCESS && batch.count == 1)
      status = cublasGemmEx(handle, op_b, op_a, static_cast<int>(n), static_cast<int>(m), static_cast<int>(k), &alpha_c,
                            b.data(), cuda_data_type<A>(), static_cast<int>(ldb), a.data(), cuda_data_type<A>(),
                            static_cast<int>(lda), &beta_c, c.data(), cuda_data_type<C>(), static_cast<int>(ldc),
                            compute, CUBLAS_GEMM_DEFAULT);
    else if (status == CUBLAS_STATUS_SUCCESS)
      status = cublasGemmStridedBatchedEx(
          handle, op_b, op_a, static_cast<int>(n), static_cast<int>(m), static_cast<int>(k), &alpha_c, b.data(),
          cuda_data_type<A>(), static_cast<int>(ldb), batch.stride_b, a.data(), cuda_data_type<A>(),
          static_cast<int>(lda), batch.stride_a, &beta_c, c.data(), cuda_data_type<C>(), static_cast<int>(ldc),
          batch.stride_c, static_cast<int>(batch.count), compute, CUBLAS_GEMM_DEFAULT);
    if (status != CUBLAS_STATUS_SUCCESS)
      throw Error(trident::detail::concat("trident::ops::matmul: cuBLAS on ", batch.count, " x [", m, ", ", k, "] x [",
                                          k, ", ", n, "] failed with status ", static_cast<int>(status)));
    return true;
  }
#endif
  (void)space, (void)a_t, (void)b_t, (void)m, (void)n, (void)k, (void)alpha, (void)a, (void)b, (void)beta, (void)c,
      (void)batch;
  return false;
}

}  // namespace detail
}  // namespace ops
}  // namespace trident
