#pragma once
// The element types of the safetensors format: their names in the header and their sizes.

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <string_view>
#include <type_traits>

namespace trident::io {

enum class DType { BOOL, U8, I8, F8_E4M3, F8_E5M2, U16, I16, F16, BF16, U32, I32, F32, U64, I64, F64 };

struct DTypeTraits {
  DType dtype;
  std::string_view name;  // the spelling in safetensors headers
  std::size_t size;       // bytes per element
};

// In the order of the enum, so a dtype indexes its own row.
inline constexpr DTypeTraits dtype_table[] = {
    {DType::BOOL, "BOOL", 1},       {DType::U8, "U8", 1},   {DType::I8, "I8", 1},   {DType::F8_E4M3, "F8_E4M3", 1},
    {DType::F8_E5M2, "F8_E5M2", 1}, {DType::U16, "U16", 2}, {DType::I16, "I16", 2}, {DType::F16, "F16", 2},
    {DType::BF16, "BF16", 2},       {DType::U32, "U32", 4}, {DType::I32, "I32", 4}, {DType::F32, "F32", 4},
    {DType::U64, "U64", 8},         {DType::I64, "I64", 8}, {DType::F64, "F64", 8}};

namespace detail {
constexpr bool dtype_table_is_in_enum_order() {
  for (std::size_t i = 0; i < std::size(dtype_table); ++i)
    if (static_cast<std::size_t>(dtype_table[i].dtype) != i) return false;
  return true;
}
static_assert(detail::dtype_table_is_in_enum_order(), "dtype_table must list the dtypes in the enum's order");
}  // namespace detail

constexpr std::string_view dtype_name(DType dtype) {
  return dtype_table[static_cast<std::size_t>(dtype)].name;
}
constexpr std::size_t dtype_size(DType dtype) {
  return dtype_table[static_cast<std::size_t>(dtype)].size;
}

// Returns false for a name the format does not define.
constexpr bool parse_dtype(std::string_view name, DType& dtype) {
  for (const DTypeTraits& row : dtype_table) {
    if (row.name == name) {
      dtype = row.dtype;
      return true;
    }
  }
  return false;
}

// The dtype that stores a C++ type unchanged.
template <class T>
constexpr DType dtype_of() {
  static_assert(std::is_arithmetic_v<T> && !std::is_same_v<T, bool> && !std::is_same_v<T, long double>,
                "no safetensors dtype stores this type");
  if constexpr (std::is_floating_point_v<T>) {
    return sizeof(T) == 4 ? DType::F32 : DType::F64;
  } else if constexpr (std::is_signed_v<T>) {
    return sizeof(T) == 1 ? DType::I8 : sizeof(T) == 2 ? DType::I16 : sizeof(T) == 4 ? DType::I32 : DType::I64;
  } else {
    return sizeof(T) == 1 ? DType::U8 : sizeof(T) == 2 ? DType::U16 : sizeof(T) == 4 ? DType::U32 : DType::U64;
  }
}

template <class T>
inline constexpr DType dtype_of_v = dtype_of<T>();

}  // namespace trident::io
