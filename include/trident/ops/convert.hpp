#pragma once
// Element-wise conversion between floating-point views of any two of double, float, bfloat16
// and float16: a 16-bit value goes through float (double to a 16-bit type rounds twice, first
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

template <bool Add, class ExecutionSpace, class ToView, class FromView>
void convert_into(const char* name, const ExecutionSpace& space, const ToView& to, const FromView& from) {
  require_argument(to.extent(0) == from.extent(0), name, ": converting ", from.extent(0), " elements into ",
                   to.extent(0));
  Kokkos::parallel_for(name,
                       Kokkos::RangePolicy<ExecutionSpace, Kokkos::IndexType<std::int64_t>>(
                           space, 0, static_cast<std::int64_t>(to.extent(0))),
                       Convert<ToView, FromView, Add>{to, from});
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
