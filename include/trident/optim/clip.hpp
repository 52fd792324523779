#pragma once
// Global-norm gradient clipping with torch.nn.utils.clip_grad_norm_ semantics:
// coef = max_norm / (total_norm + 1e-6), applied only when coef < 1.

#include <trident/core/error.hpp>
#include <trident/core/profiling.hpp>

#include <Kokkos_Core.hpp>

#include <cstdint>

namespace trident::optim {

namespace detail {

template <class View>
struct SumOfSquares {
  View m_view;
  KOKKOS_FUNCTION void operator()(const std::int64_t i, double& sum) const {
    const double x = static_cast<double>(m_view(i));
    sum += x * x;
  }
};

template <class View>
struct ScaleInPlace {
  View m_view;
  typename View::non_const_value_type m_factor;
  KOKKOS_FUNCTION void operator()(const std::int64_t i) const { m_view(i) *= m_factor; }
};

}  // namespace detail

// Sum of squares of a rank-1 view, accumulated in double.
template <class ExecutionSpace, class View>
double sum_of_squares(const ExecutionSpace& space, const View& view) {
  double sum = 0;
  Kokkos::parallel_reduce("trident::optim::sum_of_squares",
                          Kokkos::RangePolicy<ExecutionSpace, Kokkos::IndexType<std::int64_t>>(
                              space, 0, static_cast<std::int64_t>(view.extent(0))),
                          detail::SumOfSquares<View>{view}, sum);
  return sum;
}

template <class ExecutionSpace, class View>
void scale_in_place(const ExecutionSpace& space, const View& view, double factor) {
  Kokkos::parallel_for("trident::optim::scale",
                       Kokkos::RangePolicy<ExecutionSpace, Kokkos::IndexType<std::int64_t>>(
                           space, 0, static_cast<std::int64_t>(view.extent(0))),
                       detail::ScaleInPlace<View>{view, static_cast<typename View::non_const_value_type>(factor)});
}

// The factor clip_grad_norm_ multiplies the gradients by (1 when no clipping is needed).
inline double clip_coefficient(double total_norm, double max_norm) {
  require_argument(max_norm > 0, "trident::optim::clip_coefficient: max_norm must be positive, got ", max_norm);
  const double coef = max_norm / (total_norm + 1e-6);
  return coef < 1.0 ? coef : 1.0;
}

}  // namespace trident::optim
