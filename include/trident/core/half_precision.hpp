#pragma once
// 16-bit floating-point storage types: bfloat16 (8 exponent bits, 7 mantissa bits: fp32's
// range) and float16 (IEEE 754 binary16: 5 and 10, with subnormals). They store values and
// convert to and from float; arithmetic happens in float (they read as float implicitly; a
// float becomes one only by an explicit construction or by assignment into one, both of which
// round: a kernel stores its float result into a 16-bit view as it would into a float one, but
// no float local silently becomes 16 bits, and there is no += to accumulate in 16 bits). Conversions round to nearest,
// ties to even, as hardware does, and keep infinities and NaNs; they are written on the bits, so every backend gives
// the same bits, and the layouts are those of CUDA's __nv_bfloat16 and
// __half, which cuBLAS and NCCL read.

#include <Kokkos_Core.hpp>

#include <cstdint>
#include <cstring>
#include <type_traits>

namespace trident {

namespace detail {

KOKKOS_INLINE_FUNCTION std::uint32_t bits_of(float value) {
  std::uint32_t bits;
  memcpy(&bits, &value, sizeof bits);  // Kokkos' bit_cast does the same; device compilers accept memcpy
  return bits;
}

KOKKOS_INLINE_FUNCTION float float_of(std::uint32_t bits) {
  float value;
  memcpy(&value, &bits, sizeof value);
  return value;
}

}  // namespace detail

struct bfloat16 {
  std::uint16_t bits;

  bfloat16() = default;
  KOKKOS_INLINE_FUNCTION explicit bfloat16(float value) : bits(from_float(value)) {}
  KOKKOS_INLINE_FUNCTION operator float() const { return detail::float_of(std::uint32_t(bits) << 16); }
  KOKKOS_INLINE_FUNCTION bfloat16& operator=(float value) {
    bits = from_float(value);
    return *this;
  }

  KOKKOS_INLINE_FUNCTION static bfloat16 from_bits(std::uint16_t bits) {
    bfloat16 b;
    b.bits = bits;
    return b;
  }

  // The upper half of the float, rounded on the lower half (a finite value past the largest
  // bfloat16 carries into the exponent and becomes infinity, as it should).
  KOKKOS_INLINE_FUNCTION static std::uint16_t from_float(float value) {
    const std::uint32_t x = detail::bits_of(value);
    if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((x >> 16) | 0x0040u);  // quiet NaN
    return static_cast<std::uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
  }
};

struct float16 {
  std::uint16_t bits;

  float16() = default;
  KOKKOS_INLINE_FUNCTION explicit float16(float value) : bits(from_float(value)) {}
  KOKKOS_INLINE_FUNCTION operator float() const { return to_float(bits); }
  KOKKOS_INLINE_FUNCTION float16& operator=(float value) {
    bits = from_float(value);
    return *this;
  }

  KOKKOS_INLINE_FUNCTION static float16 from_bits(std::uint16_t bits) {
    float16 h;
    h.bits = bits;
    return h;
  }

  KOKKOS_INLINE_FUNCTION static std::uint16_t from_float(float value) {
    std::uint32_t x = detail::bits_of(value);
    const std::uint32_t sign = (x >> 16) & 0x8000u;
    x &= 0x7fffffffu;
    std::uint32_t h;
    if (x >= 0x47800000u) {  // 65536 and beyond, infinities, NaNs
      h = x > 0x7f800000u ? 0x7e00u : 0x7c00u;
    } else if (x < 0x38800000u) {  // below 2^-14: a subnormal or zero
      // Adding 0.5 puts the value's subnormal mantissa in the float's low bits, rounded by the
      // float adder itself (to nearest, ties to even).
      h = detail::bits_of(detail::float_of(x) + 0.5f) - 0x3f000000u;
    } else {
      // Rebias the exponent and round off 13 mantissa bits; a carry moves into the exponent
      // (65520 and up become infinity).
      h = (x - 0x38000000u + 0x0fffu + ((x >> 13) & 1u)) >> 13;
    }
    return static_cast<std::uint16_t>(h | sign);
  }

  KOKKOS_INLINE_FUNCTION static float to_float(std::uint16_t h) {
    const std::uint32_t sign = std::uint32_t(h & 0x8000u) << 16;
    const std::uint32_t exponent = h & 0x7c00u, mantissa = h & 0x03ffu;
    if (exponent == 0x7c00u) return detail::float_of(sign | 0x7f800000u | (mantissa << 13));  // inf, NaN
    if (exponent == 0) {  // zero or subnormal: mantissa * 2^-24, exact in float
      return detail::float_of(sign | detail::bits_of(static_cast<float>(mantissa) * 5.9604644775390625e-8f));
    }
    return detail::float_of(sign | ((std::uint32_t(h & 0x7fffu) << 13) + 0x38000000u));
  }
};

static_assert(sizeof(bfloat16) == 2 && sizeof(float16) == 2, "16-bit floats take two bytes");

// The 16-bit floating-point types, for templates that treat them apart.
template <class T>
inline constexpr bool is_half_precision_v = std::is_same<T, bfloat16>::value || std::is_same<T, float16>::value;

// The type arithmetic on T's values happens in: float for the 16-bit types, T itself otherwise.
// A kernel over views of any of them declares its locals and accumulators in it, so a 16-bit
// view is read once into float and rounded once when stored.
template <class T>
using compute_t = std::conditional_t<is_half_precision_v<T>, float, T>;

// Float converted to T and back: T's rounding of `value`, as a float.
template <class T>
KOKKOS_INLINE_FUNCTION float round_to(float value) {
  return static_cast<float>(T(value));
}

}  // namespace trident
