#pragma once
// Residual connections: out = a + b, and y += x, on rank-1 or rank-2 views of one shape.
// (Their backward is the identity: the layers below add into the residual stream's gradient
// with accumulate = true.) 16-bit views add in float and round the sum once.

#include <trident/core/profiling.hpp>
#include <trident/ops/detail/checks.hpp>
#include <trident/ops/detail/launch.hpp>

#include <Kokkos_Core.hpp>

#include <cstdint>

namespace trident {
namespace ops {
namespace detail {

template <class OutView, class AView, class BView, int Rank = static_cast<int>(OutView::rank)>
struct AddViews;

template <class OutView, class AView, class BView>
struct AddViews<OutView, AView, BView, 1> {
  OutView m_out;
  AView m_a;
  BView m_b;
  KOKKOS_FUNCTION void operator()(const std::int64_t i) const { m_out(i) = m_a(i) + m_b(i); }
};

template <class OutView, class AView, class BView>
struct AddViews<OutView, AView, BView, 2> {
  OutView m_out;
  AView m_a;
  BView m_b;
  KOKKOS_FUNCTION void operator()(const std::int64_t i, const std::int64_t j) const {
    m_out(i, j) = m_a(i, j) + m_b(i, j);
  }
};

template <class YView, class XView, int Rank = static_cast<int>(YView::rank)>
struct AddInPlace;

template <class YView, class XView>
struct AddInPlace<YView, XView, 1> {
  YView m_y;
  XView m_x;
  KOKKOS_FUNCTION void operator()(const std::int64_t i) const { m_y(i) = m_y(i) + m_x(i); }
};

template <class YView, class XView>
struct AddInPlace<YView, XView, 2> {
  YView m_y;
  XView m_x;
  KOKKOS_FUNCTION void operator()(const std::int64_t i, const std::int64_t j) const {
    m_y(i, j) = m_y(i, j) + m_x(i, j);
  }
};

template <class ExecutionSpace, class Functor, class View>
void launch_over(const ExecutionSpace& space, const char* label, const View& shape, const Functor& functor) {
  if constexpr (static_cast<int>(View::rank) == 1) {
    Kokkos::parallel_for(label, IndexRange<ExecutionSpace>(space, 0, extent(shape, 0)), functor);
  } else {
    for_each_element(space, label, extent(shape, 0), extent(shape, 1), functor);
  }
}

}  // namespace detail

// out = a + b  (rank 1 or 2, all of one shape)
template <class ExecutionSpace, class OutView, class AView, class BView>
void residual_forward(const ExecutionSpace& space, const OutView& out, const AView& a, const BView& b) {
  detail::assert_accessible<ExecutionSpace, OutView, AView, BView>();
  static_assert(static_cast<int>(OutView::rank) == 1 || static_cast<int>(OutView::rank) == 2,
                "trident::ops::residual_forward takes rank-1 or rank-2 views");
  ScopedRegion region("trident::ops::residual_forward");
  const char* op = "trident::ops::residual_forward";
  detail::require_same_shape(a, out, op, "a", "out");
  detail::require_same_shape(b, out, op, "b", "out");
  detail::launch_over(space, op, out, detail::AddViews<OutView, AView, BView>{out, a, b});
}

// y += x  (rank 1 or 2, one shape)
template <class ExecutionSpace, class YView, class XView>
void add_inplace(const ExecutionSpace& space, const YView& y, const XView& x) {
  detail::assert_accessible<ExecutionSpace, YView, XView>();
  static_assert(static_cast<int>(YView::rank) == 1 || static_cast<int>(YView::rank) == 2,
                "trident::ops::add_inplace takes rank-1 or rank-2 views");
  ScopedRegion region("trident::ops::add_inplace");
  const char* op = "trident::ops::add_inplace";
  detail::require_same_shape(x, y, op, "x", "y");
  detail::launch_over(space, op, y, detail::AddInPlace<YView, XView>{y, x});
}

}  // namespace ops
}  // namespace trident
