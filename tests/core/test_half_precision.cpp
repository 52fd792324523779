// bfloat16 and float16 against the rounding rule itself: every 16-bit pattern decodes and
// encodes back, every point halfway between neighbours goes to the even one, and one float
// step either side of it to the nearer; the kernels convert alike on every execution space.

#include "execution_spaces.hpp"
#include "trident_test.hpp"

#include <trident/core/half_precision.hpp>
#include <trident/ops/convert.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

namespace {

using trident::bfloat16;
using trident::float16;

float float_of_bits(std::uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}

template <class T>
float decode(std::uint16_t bits) {
  return static_cast<float>(T::from_bits(bits));
}

template <class T>
std::uint16_t encode(float value) {
  return T(value).bits;
}

// The positive finite patterns, in increasing order of value, and the pattern of infinity.
template <class T>
constexpr std::uint16_t infinity_bits() {
  return std::is_same<T, bfloat16>::value ? 0x7f80 : 0x7c00;
}

// The float halfway between pattern k and k + 1 (k + 1 may be infinity: then the point
// halfway to the next power of two, where rounding to even overflows).
template <class T>
float midpoint(std::uint16_t k) {
  if constexpr (std::is_same<T, bfloat16>::value) {
    return float_of_bits((std::uint32_t(k) << 16) | 0x8000u);  // exact: bfloat16 is float's upper half
  } else {
    if (k + 1 == infinity_bits<T>()) return 65520.0f;
    return (decode<T>(k) + decode<T>(static_cast<std::uint16_t>(k + 1))) / 2;  // exact: 12 significant bits
  }
}

}  // namespace

TEMPLATE_TEST_CASE("every 16-bit pattern decodes and encodes back to itself", "[half]", bfloat16, float16) {
  int wrong = 0, nans = 0;
  for (std::uint32_t bits = 0; bits <= 0xffff; ++bits) {
    const auto k = static_cast<std::uint16_t>(bits);
    const float value = decode<TestType>(k);
    if (std::isnan(value)) {
      ++nans;
      wrong += std::isnan(decode<TestType>(encode<TestType>(value))) ? 0 : 1;  // stays a NaN
      continue;
    }
    wrong += encode<TestType>(value) == k ? 0 : 1;
  }
  CHECK(wrong == 0);
  // NaNs: an all-ones exponent with any non-zero mantissa, of either sign.
  CHECK(nans == (std::is_same<TestType, bfloat16>::value ? 2 * 127 : 2 * 1023));
}

TEMPLATE_TEST_CASE("conversion rounds to nearest, ties to even, on every gap between neighbours", "[half]", bfloat16,
                   float16) {
  int wrong = 0;
  for (std::uint16_t k = 0; k < infinity_bits<TestType>(); ++k) {
    const float middle = midpoint<TestType>(k);
    const std::uint16_t even = (k % 2 == 0) ? k : static_cast<std::uint16_t>(k + 1);
    const float below = std::nextafter(middle, 0.0f),
                above = std::nextafter(middle, std::numeric_limits<float>::infinity());
    wrong += encode<TestType>(middle) == even ? 0 : 1;
    wrong += encode<TestType>(below) == k ? 0 : 1;
    wrong += encode<TestType>(above) == k + 1 ? 0 : 1;
    // The sign is a bit apart: negative values round alike.
    wrong += encode<TestType>(-middle) == (even | 0x8000) ? 0 : 1;
    wrong += encode<TestType>(-above) == ((k + 1) | 0x8000) ? 0 : 1;
  }
  CHECK(wrong == 0);
}

TEST_CASE("the 16-bit floats' landmarks", "[half]") {
  CHECK(encode<float16>(1.0f) == 0x3c00);
  CHECK(encode<float16>(65504.0f) == 0x7bff);  // the largest float16
  CHECK(encode<float16>(65519.99f) == 0x7bff);
  CHECK(encode<float16>(65520.0f) == 0x7c00);  // halfway to 2^16 rounds to the even: infinity
  CHECK(encode<float16>(1e30f) == 0x7c00);
  CHECK(encode<float16>(std::ldexp(1.0f, -24)) == 0x0001);  // the smallest subnormal
  CHECK(encode<float16>(std::ldexp(1.0f, -25)) == 0x0000);  // halfway to zero: the even zero
  CHECK(encode<float16>(std::ldexp(3.0f, -25)) == 0x0002);
  CHECK(encode<float16>(std::ldexp(1.0f, -14)) == 0x0400);  // the smallest normal
  CHECK(encode<float16>(-0.0f) == 0x8000);
  CHECK(encode<float16>(-std::numeric_limits<float>::infinity()) == 0xfc00);
  CHECK(decode<float16>(0x0001) == std::ldexp(1.0f, -24));
  CHECK(decode<float16>(0x83ff) == -std::ldexp(1023.0f, -24));

  CHECK(encode<bfloat16>(1.0f) == 0x3f80);
  CHECK(encode<bfloat16>(std::numeric_limits<float>::max()) == 0x7f80);  // past the largest bfloat16
  CHECK(encode<bfloat16>(float_of_bits(0x7f7f7fffu)) == 0x7f7f);
  CHECK(encode<bfloat16>(std::numeric_limits<float>::denorm_min()) == 0x0000);
  CHECK(encode<bfloat16>(float_of_bits(0x00018000u)) == 0x0002);  // float subnormals round alike
  CHECK(encode<bfloat16>(float_of_bits(0x7fc00001u)) == 0x7fc0);  // a NaN's payload below the kept bits
  CHECK(std::isnan(decode<bfloat16>(encode<bfloat16>(float_of_bits(0x7f800001u)))));  // signalling: still NaN
  CHECK(std::isnan(decode<float16>(encode<float16>(float_of_bits(0x7f800001u)))));
}

TEMPLATE_LIST_TEST_CASE("the conversion kernels give the host's bits on every execution space", "[half]",
                        trident_test::ExecutionSpaces) {
  using Space = TestType;
  using Memory = typename Space::memory_space;
  // Every float16 value and every halfway point between neighbours, both signs, and some
  // doubles.
  std::vector<float> samples;
  for (std::uint16_t k = 0; k < 0x7c00; ++k) {
    samples.push_back(decode<float16>(k));
    samples.push_back(-midpoint<float16>(k));
    samples.push_back(midpoint<bfloat16>(static_cast<std::uint16_t>(k + 0x3000)));
  }
  const auto n = samples.size();
  Kokkos::View<float*, Memory> floats("floats", n);
  Kokkos::View<double*, Memory> doubles("doubles", n);
  auto host = Kokkos::create_mirror_view(floats);
  for (std::size_t i = 0; i < n; ++i) host(i) = samples[i];
  Kokkos::deep_copy(floats, host);
  trident::ops::convert(Space(), doubles, floats);

  Kokkos::View<bfloat16*, Memory> brain("brain", n);
  Kokkos::View<float16*, Memory> half("half", n);
  trident::ops::convert(Space(), brain, floats);
  trident::ops::convert(Space(), half, doubles);
  Kokkos::View<float*, Memory> sum("sum", n);
  trident::ops::convert(Space(), sum, brain);
  trident::ops::add_converted(Space(), sum, half);
  const auto b = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), brain);
  const auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), half);
  const auto s = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), sum);
  int wrong = 0;
  for (std::size_t i = 0; i < n; ++i) {
    wrong += b(i).bits == encode<bfloat16>(samples[i]) ? 0 : 1;
    wrong += h(i).bits == encode<float16>(samples[i]) ? 0 : 1;
    const float expected =
        decode<bfloat16>(encode<bfloat16>(samples[i])) + decode<float16>(encode<float16>(samples[i]));
    wrong += s(i) == expected || (std::isnan(s(i)) && std::isnan(expected)) ? 0 : 1;
  }
  CHECK(wrong == 0);
  Kokkos::View<float*, Memory> shorter("shorter", n - 1);
  CHECK_THROWS_WITH(trident::ops::convert(Space(), shorter, brain), Catch::Contains("converting"));
}
