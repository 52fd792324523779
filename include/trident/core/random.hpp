#pragma once
// Layout-independent random numbers: Philox-4x32-10 (Salmon et al., SC'11), a counter-based
// generator. The value of element i of tensor "name" depends only on (seed, name, i), never on
// which rank or thread computes it, so every shard a rank initialises is bit-for-bit the
// same slice of the one-rank tensor, on every backend.

#include <trident/core/compat.hpp>
#include <trident/core/error.hpp>
#include <trident/core/profiling.hpp>

#include <Kokkos_Core.hpp>

#include <cstdint>
#include <string_view>

namespace trident {

// Identifies one random tensor: the run's seed and a hash of the tensor's global name.
struct RandomStream {
  std::uint64_t seed = 0;
  std::uint64_t name_hash = 0;
};

// FNV-1a: stable across compilers and platforms (std::hash is not).
constexpr std::uint64_t stable_hash(std::string_view text) {
  std::uint64_t hash = 14695981039346656037ull;
  for (char c : text) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 1099511628211ull;
  }
  return hash;
}

inline RandomStream random_stream(std::uint64_t seed, std::string_view tensor_name) {
  return RandomStream{seed, stable_hash(tensor_name)};
}

namespace detail {

struct Philox4x32Block {
  std::uint32_t v[4];
};

KOKKOS_INLINE_FUNCTION void mul_hi_lo(std::uint32_t a, std::uint32_t b, std::uint32_t& hi, std::uint32_t& lo) {
  const std::uint64_t product = static_cast<std::uint64_t>(a) * b;
  hi = static_cast<std::uint32_t>(product >> 32);
  lo = static_cast<std::uint32_t>(product);
}

KOKKOS_INLINE_FUNCTION Philox4x32Block philox4x32_10(Philox4x32Block counter, std::uint32_t key0, std::uint32_t key1) {
  constexpr std::uint32_t m0 = 0xD2511F53u, m1 = 0xCD9E8D57u;
  constexpr std::uint32_t w0 = 0x9E3779B9u, w1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    std::uint32_t hi0, lo0, hi1, lo1;
    mul_hi_lo(m0, counter.v[0], hi0, lo0);
    mul_hi_lo(m1, counter.v[2], hi1, lo1);
    counter = Philox4x32Block{{hi1 ^ counter.v[1] ^ key0, lo1, hi0 ^ counter.v[3] ^ key1, lo0}};
    key0 += w0;
    key1 += w1;
  }
  return counter;
}

KOKKOS_INLINE_FUNCTION Philox4x32Block random_block(const RandomStream& stream, std::uint64_t index) {
  const Philox4x32Block counter{{static_cast<std::uint32_t>(index), static_cast<std::uint32_t>(index >> 32),
                                 static_cast<std::uint32_t>(stream.name_hash),
                                 static_cast<std::uint32_t>(stream.name_hash >> 32)}};
  return philox4x32_10(counter, static_cast<std::uint32_t>(stream.seed), static_cast<std::uint32_t>(stream.seed >> 32));
}

// 53 random bits → a double in [0, 1).
KOKKOS_INLINE_FUNCTION double to_unit_interval(std::uint32_t hi, std::uint32_t lo) {
  const std::uint64_t bits = (static_cast<std::uint64_t>(hi) << 21) ^ (lo >> 11);
  return static_cast<double>(bits) * (1.0 / 9007199254740992.0);
}

}  // namespace detail

// Uniform in [0, 1) for element `index` of the stream.
KOKKOS_INLINE_FUNCTION double random_uniform(const RandomStream& stream, std::uint64_t index) {
  const auto block = detail::random_block(stream, index);
  return detail::to_unit_interval(block.v[0], block.v[1]);
}

// Standard normal for element `index` of the stream (Box-Muller on one Philox block).
KOKKOS_INLINE_FUNCTION double random_normal(const RandomStream& stream, std::uint64_t index) {
  const auto block = detail::random_block(stream, index);
  const double u1 = 1.0 - detail::to_unit_interval(block.v[0], block.v[1]);  // (0, 1]: log is finite
  const double u2 = detail::to_unit_interval(block.v[2], block.v[3]);
  constexpr double two_pi = 6.283185307179586476925286766559;
  return math::sqrt(-2.0 * math::log(u1)) * math::cos(two_pi * u2);
}

// Where a local view sits inside its global tensor. For a rank-2 view, local element (i, j)
// is global element (row_offset + i, col_offset + j) of a tensor with global_cols columns
// (0 means "as many as the local view"). For a rank-1 view, local i is global row_offset + i.
struct GlobalSlice {
  std::int64_t global_cols = 0;
  std::int64_t row_offset = 0;
  std::int64_t col_offset = 0;
};

enum class Distribution { uniform, normal };

namespace detail {

template <class ViewType, int Rank = static_cast<int>(ViewType::rank)>
struct FillRandom;

template <class ViewType>
struct FillRandom<ViewType, 1> {
  ViewType m_view;
  RandomStream m_stream;
  Distribution m_distribution;
  double m_shift, m_scale;
  std::int64_t m_offset;

  KOKKOS_FUNCTION void operator()(const std::int64_t i) const {
    const auto index = static_cast<std::uint64_t>(m_offset + i);
    const double r =
        m_distribution == Distribution::normal ? random_normal(m_stream, index) : random_uniform(m_stream, index);
    m_view(i) = static_cast<typename ViewType::non_const_value_type>(m_shift + m_scale * r);
  }
};

template <class ViewType>
struct FillRandom<ViewType, 2> {
  ViewType m_view;
  RandomStream m_stream;
  Distribution m_distribution;
  double m_shift, m_scale;
  std::int64_t m_global_cols, m_row_offset, m_col_offset;

  KOKKOS_FUNCTION void operator()(const std::int64_t flat) const {
    const std::int64_t cols = static_cast<std::int64_t>(m_view.extent(1));
    const std::int64_t i = flat / cols, j = flat % cols;
    const auto index = static_cast<std::uint64_t>((m_row_offset + i) * m_global_cols + m_col_offset + j);
    const double r =
        m_distribution == Distribution::normal ? random_normal(m_stream, index) : random_uniform(m_stream, index);
    m_view(i, j) = static_cast<typename ViewType::non_const_value_type>(m_shift + m_scale * r);
  }
};

template <class ExecutionSpace, class ViewType>
void fill_random(const ExecutionSpace& space, const ViewType& view, const RandomStream& stream,
                 Distribution distribution, double shift, double scale, const GlobalSlice& slice) {
  static_assert(Kokkos::is_execution_space<ExecutionSpace>::value, "first argument must be an execution space");
  static_assert(Kokkos::SpaceAccessibility<ExecutionSpace, typename ViewType::memory_space>::accessible,
                "the execution space cannot access the view's memory");
  constexpr int rank = static_cast<int>(ViewType::rank);
  static_assert(rank == 1 || rank == 2, "trident::fill_* takes rank-1 or rank-2 views");
  ScopedRegion region("trident::core::fill_random");
  if constexpr (rank == 1) {
    FillRandom<ViewType> functor{view, stream, distribution, shift, scale, slice.row_offset};
    Kokkos::parallel_for("trident::core::fill_random",
                         Kokkos::RangePolicy<ExecutionSpace, Kokkos::IndexType<std::int64_t>>(
                             space, 0, static_cast<std::int64_t>(view.extent(0))),
                         functor);
  } else {
    const std::int64_t global_cols =
        slice.global_cols > 0 ? slice.global_cols : static_cast<std::int64_t>(view.extent(1));
    require_argument(slice.col_offset + static_cast<std::int64_t>(view.extent(1)) <= global_cols,
                     "trident::fill_random: columns [", slice.col_offset, ", ", slice.col_offset + view.extent(1),
                     ") exceed the global column count ", global_cols);
    FillRandom<ViewType> functor{view,  stream,      distribution,     shift,
                                 scale, global_cols, slice.row_offset, slice.col_offset};
    Kokkos::parallel_for("trident::core::fill_random",
                         Kokkos::RangePolicy<ExecutionSpace, Kokkos::IndexType<std::int64_t>>(
                             space, 0, static_cast<std::int64_t>(view.extent(0) * view.extent(1))),
                         functor);
  }
}

}  // namespace detail

// Fills `view` with normal(mean, stddev) values, element-for-element those of the global tensor.
template <class ExecutionSpace, class ViewType>
void fill_normal(const ExecutionSpace& space, const ViewType& view, const RandomStream& stream, double mean,
                 double stddev, const GlobalSlice& slice = {}) {
  detail::fill_random(space, view, stream, Distribution::normal, mean, stddev, slice);
}

// Fills `view` with uniform values in [low, high), element-for-element those of the global tensor.
template <class ExecutionSpace, class ViewType>
void fill_uniform(const ExecutionSpace& space, const ViewType& view, const RandomStream& stream, double low,
                  double high, const GlobalSlice& slice = {}) {
  detail::fill_random(space, view, stream, Distribution::uniform, low, high - low, slice);
}

}  // namespace trident
