// The counter-based generator: known-answer vectors, statistics, and the property the whole
// library relies on: a shard filled on its own equals the same slice of the global tensor.

#include "execution_spaces.hpp"
#include "trident_test.hpp"

#include <trident/core/random.hpp>

#include <cmath>

namespace {

using DefaultSpace = Kokkos::DefaultExecutionSpace;  // where the reference tensor is drawn
using Host = Kokkos::DefaultHostExecutionSpace;

trident::detail::Philox4x32Block philox_on_host(std::uint32_t c0, std::uint32_t c1, std::uint32_t c2, std::uint32_t c3,
                                                std::uint32_t k0, std::uint32_t k1) {
  return trident::detail::philox4x32_10({{c0, c1, c2, c3}}, k0, k1);
}

// A host copy in the device view's layout (LayoutLeft on GPUs), hence auto.
template <class Space = DefaultSpace>
auto global_tensor(std::int64_t rows, std::int64_t cols, const trident::RandomStream& stream) {
  Kokkos::View<float**, Space> global("global", rows, cols);
  trident::fill_normal(Space(), global, stream, 0.0, 0.02);
  return Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), global);
}

}  // namespace

TEST_CASE("Philox-4x32-10 matches the Random123 known-answer vectors", "[random]") {
  auto zero = philox_on_host(0, 0, 0, 0, 0, 0);
  CHECK(zero.v[0] == 0x6627e8d5u);
  CHECK(zero.v[1] == 0xe169c58du);
  CHECK(zero.v[2] == 0xbc57ac4cu);
  CHECK(zero.v[3] == 0x9b00dbd8u);
  auto ones = philox_on_host(0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu);
  CHECK(ones.v[0] == 0x408f276du);
  CHECK(ones.v[1] == 0x41c83b0eu);
  CHECK(ones.v[2] == 0xa20bc7c6u);
  CHECK(ones.v[3] == 0x6d5451fdu);
  auto pi = philox_on_host(0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u, 0xa4093822u, 0x299f31d0u);
  CHECK(pi.v[0] == 0xd16cfe09u);
  CHECK(pi.v[1] == 0x94fdccebu);
  CHECK(pi.v[2] == 0x5001e420u);
  CHECK(pi.v[3] == 0x24126ea1u);
}

TEMPLATE_LIST_TEST_CASE("normal and uniform fills have the requested moments", "[random]",
                        trident_test::ExecutionSpaces) {
  using Space = TestType;
  const std::int64_t n = 200000;
  Kokkos::View<double*, Space> normal("normal", n), uniform("uniform", n);
  trident::fill_normal(Space(), normal, trident::random_stream(7, "n"), 1.5, 0.5);
  trident::fill_uniform(Space(), uniform, trident::random_stream(7, "u"), -2.0, 4.0);
  auto hn = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), normal);
  auto hu = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), uniform);
  double sum = 0, sum_sq = 0, usum = 0, umin = 1e9, umax = -1e9;
  for (std::int64_t i = 0; i < n; ++i) {
    sum += hn(i);
    sum_sq += hn(i) * hn(i);
    usum += hu(i);
    umin = std::min(umin, hu(i));
    umax = std::max(umax, hu(i));
  }
  const double mean = sum / n, var = sum_sq / n - mean * mean;
  // Standard errors: 0.5/sqrt(n) = 1.1e-3 for the mean; generous 5-sigma bounds.
  CHECK(std::abs(mean - 1.5) < 6e-3);
  CHECK(std::abs(std::sqrt(var) - 0.5) < 6e-3);
  CHECK(std::abs(usum / n - 1.0) < 0.02);
  CHECK(umin >= -2.0);
  CHECK(umax < 4.0);
}

TEST_CASE("different names, seeds and indices give different streams", "[random]") {
  const auto a = trident::random_stream(1, "h.0.attn.c_attn.weight");
  const auto b = trident::random_stream(1, "h.0.attn.c_proj.weight");
  const auto c = trident::random_stream(2, "h.0.attn.c_attn.weight");
  CHECK(trident::random_uniform(a, 0) != trident::random_uniform(b, 0));
  CHECK(trident::random_uniform(a, 0) != trident::random_uniform(c, 0));
  CHECK(trident::random_uniform(a, 0) != trident::random_uniform(a, 1));
  CHECK(trident::random_normal(a, 5) == trident::random_normal(a, 5));
}

TEMPLATE_LIST_TEST_CASE("row and column shards are bit-for-bit slices of the global tensor", "[random]",
                        trident_test::ExecutionSpaces) {
  using Space = TestType;
  const std::int64_t rows = 24, cols = 36;
  const auto stream = trident::random_stream(1234, "h.3.mlp.c_fc.weight");
  const auto global = global_tensor(rows, cols, stream);
  for (int tp : {1, 2, 3, 4, 6}) {
    INFO("tp = " << tp);
    for (int part = 0; part < tp; ++part) {
      // Column shard (column-parallel weight): all rows, columns [part*cols/tp, ...).
      const std::int64_t local_cols = cols / tp, col_offset = part * local_cols;
      Kokkos::View<float**, Space> column_shard("column_shard", rows, local_cols);
      trident::fill_normal(Space(), column_shard, stream, 0.0, 0.02, {cols, 0, col_offset});
      auto hc = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), column_shard);
      int column_mismatches = 0;
      for (std::int64_t i = 0; i < rows; ++i)
        for (std::int64_t j = 0; j < local_cols; ++j) column_mismatches += hc(i, j) != global(i, col_offset + j);
      CHECK(column_mismatches == 0);

      // Row shard (row-parallel weight): rows [part*rows/tp, ...), all columns.
      const std::int64_t local_rows = rows / tp, row_offset = part * local_rows;
      Kokkos::View<float**, Space> row_shard("row_shard", local_rows, cols);
      trident::fill_normal(Space(), row_shard, stream, 0.0, 0.02, {cols, row_offset, 0});
      auto hr = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), row_shard);
      int row_mismatches = 0;
      for (std::int64_t i = 0; i < local_rows; ++i)
        for (std::int64_t j = 0; j < cols; ++j) row_mismatches += hr(i, j) != global(row_offset + i, j);
      CHECK(row_mismatches == 0);
    }
  }
}

TEMPLATE_LIST_TEST_CASE("a strided subview fills like the slice it views", "[random]", trident_test::ExecutionSpaces) {
  using Space = TestType;
  const std::int64_t rows = 8, cols = 12;
  const auto stream = trident::random_stream(99, "c_attn");
  const auto global = global_tensor(rows, cols, stream);
  Kokkos::View<float**, Space> packed("packed", rows, cols);
  // Fill only columns [4, 8) of a full-size view through a strided subview.
  auto middle = Kokkos::subview(packed, Kokkos::ALL, Kokkos::make_pair(4, 8));
  trident::fill_normal(Space(), middle, stream, 0.0, 0.02, {cols, 0, 4});
  auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), packed);
  int mismatches = 0;
  for (std::int64_t i = 0; i < rows; ++i)
    for (std::int64_t j = 0; j < cols; ++j) mismatches += (j >= 4 && j < 8) ? h(i, j) != global(i, j) : h(i, j) != 0;
  CHECK(mismatches == 0);
}

TEMPLATE_LIST_TEST_CASE("every rank and every execution space draws the same tensor", "[random][mpi]",
                        trident_test::ExecutionSpaces) {
  using Space = TestType;
  const auto stream = trident::random_stream(5, "wte.weight");
  const auto local = global_tensor<Space>(4, 5, stream);
  const auto on_default_space = global_tensor(4, 5, stream);
  std::vector<float> mine, reference;
  for (std::int64_t i = 0; i < 4; ++i)
    for (std::int64_t j = 0; j < 5; ++j) {
      mine.push_back(local(i, j));
      reference.push_back(on_default_space(i, j));
    }
  CHECK(mine == reference);  // bitwise, whatever space and layout drew it
  std::vector<float> root = mine;
  MPI_Bcast(root.data(), static_cast<int>(root.size()), MPI_FLOAT, 0, MPI_COMM_WORLD);
  CHECK(mine == root);
}
