#pragma once
// Branch-free float exponential and select, so the hot loops (softmax, cross-entropy, GELU)
// vectorise on host compilers at default flags: a call to expf, or a float `?:` feeding
// arithmetic (which -ftrapping-math turns into a branch), keeps a loop scalar.
//
// exp(float): Cody-Waite range reduction x = k ln2 + r, |r| <= ln2/2, and the degree-5
// polynomial of Cephes' expf; measured error < 0.7 ulp on [-87.3, 88.3]. Outside that range
// the result saturates (about 1.2e-38 below, 2.4e38 above); NaN stays NaN. Double uses the
// library exp: it is the precision of the gradient checks, not of training.

#include <trident/core/compat.hpp>

#include <Kokkos_Core.hpp>

#include <cstdint>
#include <cstring>

namespace trident {
namespace ops {
namespace detail {

KOKKOS_INLINE_FUNCTION std::int32_t float_bits(float x) {
  std::int32_t bits;
  std::memcpy(&bits, &x, sizeof(bits));
  return bits;
}

KOKKOS_INLINE_FUNCTION float bits_float(std::int32_t bits) {
  float x;
  std::memcpy(&x, &bits, sizeof(x));
  return x;
}

// condition ? a : b, as a bit blend the vectoriser accepts.
KOKKOS_INLINE_FUNCTION float select(bool condition, float a, float b) {
  const std::int32_t mask = -static_cast<std::int32_t>(condition);
  return bits_float((float_bits(a) & mask) | (float_bits(b) & ~mask));
}

template <class Scalar>
KOKKOS_INLINE_FUNCTION Scalar select(bool condition, Scalar a, Scalar b) {
  return condition ? a : b;
}

// A bijection from floats to int32 that keeps their order (NaN with the sign bit clear sorts
// above +inf), so a float maximum can run as an integer maximum, which vectorises.
KOKKOS_INLINE_FUNCTION std::int32_t ordered_key(float x) {
  const std::int32_t bits = float_bits(x);
  return bits ^ ((bits >> 31) & 0x7fffffff);
}

KOKKOS_INLINE_FUNCTION float from_ordered_key(std::int32_t key) {
  return bits_float(key ^ ((key >> 31) & 0x7fffffff));
}

KOKKOS_INLINE_FUNCTION float fast_exp(float x) {
  constexpr float lowest = -87.33654f, highest = 88.37626f;  // keep 2^k a normal float
  x = select(x < lowest, lowest, x);
  x = select(x > highest, highest, x);
  constexpr float shifter = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const float shifted = x * 1.44269504088896341f + shifter;
  const float k = shifted - shifter;
  const std::int32_t exponent = float_bits(shifted) - float_bits(shifter);
  float r = x - k * 0.693359375f;  // ln2 split in two so k * ln2_hi is exact
  r = r - k * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float e = p * r * r + r + 1.0f;
  // 2^k built from its bits (unsigned: no overflow even for NaN input).
  return e * bits_float(static_cast<std::int32_t>(static_cast<std::uint32_t>(exponent + 127) << 23));
}

template <class Scalar>
KOKKOS_INLINE_FUNCTION Scalar fast_exp(Scalar x) {
  return math::exp(x);
}

}  // namespace detail
}  // namespace ops
}  // namespace trident
