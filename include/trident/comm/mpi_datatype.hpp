#pragma once
// Element types a View may hold when it crosses MPI, and their MPI datatypes. Integers map by
// width and signedness, so int64_t, long and long long all become MPI_INT64_T. The 16-bit
// floats travel as 16-bit words; their reductions are trident's own (reduce_op.hpp).

#include <trident/core/half_precision.hpp>

#include <mpi.h>

#include <type_traits>

namespace trident {
namespace comm {

enum class ElementType : int {
  none,
  int8,
  uint8,
  int16,
  uint16,
  int32,
  uint32,
  int64,
  uint64,
  float32,
  float64,
  bfloat16,
  float16
};

inline const char* element_type_name(ElementType type) {
  switch (type) {
    case ElementType::none:
      return "none";
    case ElementType::int8:
      return "int8";
    case ElementType::uint8:
      return "uint8";
    case ElementType::int16:
      return "int16";
    case ElementType::uint16:
      return "uint16";
    case ElementType::int32:
      return "int32";
    case ElementType::uint32:
      return "uint32";
    case ElementType::int64:
      return "int64";
    case ElementType::uint64:
      return "uint64";
    case ElementType::float32:
      return "float";
    case ElementType::float64:
      return "double";
    case ElementType::bfloat16:
      return "bfloat16";
    case ElementType::float16:
      return "float16";
  }
  return "unknown";
}

// bool and long double have no portable MPI reduction; everything else arithmetic does, and
// the 16-bit floats.
template <class T>
inline constexpr bool is_supported_element_v = std::is_same<T, float>::value || std::is_same<T, double>::value ||
                                               is_half_precision_v<T> ||
                                               (std::is_integral<T>::value && !std::is_same<T, bool>::value &&
                                                sizeof(T) <= 8);

template <class T>
constexpr ElementType element_type_of() {
  static_assert(is_supported_element_v<T>,
                "trident::comm: this element type has no MPI datatype (use float, double, bfloat16, float16 or an "
                "8- to 64-bit integer)");
  if constexpr (std::is_same<T, float>::value) {
    return ElementType::float32;
  } else if constexpr (std::is_same<T, double>::value) {
    return ElementType::float64;
  } else if constexpr (std::is_same<T, bfloat16>::value) {
    return ElementType::bfloat16;
  } else if constexpr (std::is_same<T, float16>::value) {
    return ElementType::float16;
  } else if constexpr (sizeof(T) == 1) {
    return std::is_signed<T>::value ? ElementType::int8 : ElementType::uint8;
  } else if constexpr (sizeof(T) == 2) {
    return std::is_signed<T>::value ? ElementType::int16 : ElementType::uint16;
  } else if constexpr (sizeof(T) == 4) {
    return std::is_signed<T>::value ? ElementType::int32 : ElementType::uint32;
  } else {
    return std::is_signed<T>::value ? ElementType::int64 : ElementType::uint64;
  }
}

namespace Impl {

inline MPI_Datatype mpi_datatype(ElementType type) {
  switch (type) {
    case ElementType::int8:
      return MPI_INT8_T;
    case ElementType::uint8:
      return MPI_UINT8_T;
    case ElementType::int16:
      return MPI_INT16_T;
    case ElementType::uint16:
    case ElementType::bfloat16:
    case ElementType::float16:
      return MPI_UINT16_T;
    case ElementType::int32:
      return MPI_INT32_T;
    case ElementType::uint32:
      return MPI_UINT32_T;
    case ElementType::int64:
      return MPI_INT64_T;
    case ElementType::uint64:
      return MPI_UINT64_T;
    case ElementType::float32:
      return MPI_FLOAT;
    case ElementType::float64:
      return MPI_DOUBLE;
    case ElementType::none:
      break;
  }
  return MPI_DATATYPE_NULL;
}

template <class T>
MPI_Datatype mpi_datatype() {
  return mpi_datatype(element_type_of<T>());
}

}  // namespace Impl
}  // namespace comm
}  // namespace trident
