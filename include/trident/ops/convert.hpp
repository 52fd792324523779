#pragma once
// Element-wise conversion between floating-point views (rank 1 or 2) of any two of double,
// float, bfloat16 and float16: a 16-bit value goes through float (double to a 16-bit type rounds twice, first
// to float; gradients are float where that matters).
//   convert(space, to, from)         to(i) = from(i) in to's type
//   add_converted(space, to, from)   to(i) += from(i), in to's type

#include <trident/core/error.hpp>
#include <trident/core/half_precision.hpp>

#include <Kokkos_Core.hpp>

#include <cstdint>
#include <string>

namespace trident::ops {

namespace detail {

template <class To, class From>
KOKKOS_INLINE_FUNCTION To convert_value(const From& value) {
  if constexpr (is_half_precision_v<From> || is_half_precision_v<To>) {
    return To(static_cast<float>(value));
  } else {
    return static_cast<To>(value);
  }
}

template <class ToView, class FromView, bool Add>
struct Convert {
  ToView m_to;
  FromView m_from;
  KOKKOS_FUNCTION void operator()(const std::int64_t i) const {
    using To = typename ToView::non_const_value_type;
    if constexpr (Add) {
      m_to(i) += convert_value<To>(m_from(i));
    } else {
      m_to(i) = convert_value<To>(m_from(i));
    }
  }
};

// Rank 2: element i is (i / columns, i % columns).
template <class ToView, class FromView, bool Add>
struct ConvertMatrix {
  ToView m_to;
  FromView m_from;
  std::int64_t m_columns;
  KOKKOS_FUNCTION void operator()(const std::int64_t i) const {
    using To = typename ToView::non_const_value_type;
    const std::int64_t r = i / m_columns, c = i % m_columns;
    if constexpr (Add) {
      m_to(r, c) += convert_value<To>(m_from(r, c));
    } else {
      m_to(r, c) = convert_value<To>(m_from(r, c));
    }
  }
};

template <bool Add, class ExecutionSpace, class ToView, class FromView>
void convert_into(const char* name, const ExecutionSpace& space, const ToView& to, const FromView& from) {
  constexpr int rank = static_cast<int>(ToView::rank);  // an enum in Kokkos 3
  static_assert(rank == static_cast<int>(FromView::rank) && (rank == 1 || rank == 2),
                "trident::ops::convert: two views of rank 1, or two of rank 2");
  using Policy = Kokkos::RangePolicy<ExecutionSpace, Kokkos::IndexType<std::int64_t>>;
  if constexpr (rank == 1) {
    require_argument(to.extent(0) == from.extent(0), name, ": converting ", from.extent(0), " elements into ",
                     to.extent(0));
    Kokkos::parallel_for(name, Policy(space, 0, static_cast<std::int64_t>(to.extent(0))),
                         Convert<ToView, FromView, Add>{to, from});
  } else {
    require_argument(to.extent(0) == from.extent(0) && to.extent(1) == from.extent(1), name, ": converting ",
                     from.extent(0), " x ", from.extent(1), " elements into ", to.extent(0), " x ", to.extent(1));
    const auto columns = static_cast<std::int64_t>(to.extent(1));
    Kokkos::parallel_for(name, Policy(space, 0, static_cast<std::int64_t>(to.extent(0)) * columns),
                         ConvertMatrix<ToView, FromView, Add>{to, from, columns});
  }
}

}  // namespace detail

template <class ExecutionSpace, class ToView, class FromView>
void convert(const ExecutionSpace& space, const ToView& to, const FromView& from) {
  detail::convert_into<false>("trident::ops::convert", space, to, from);
}

template <class ExecutionSpace, class ToView, class FromView>
void add_converted(const ExecutionSpace& space, const ToView& to, const FromView& from) {
  detail::convert_into<true>("trident::ops::add_converted", space, to, from);
}

}  // namespace trident::ops
