// Blocking collectives on contiguous, strided and LayoutLeft views, float and double (and
// integers), in place and out of place. Rank r's element i is comm_test::value(r, i), so every
// rank computes the expected result of every collective on its own.

#include "comm_test_helpers.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

using namespace comm_test;
using trident::comm::ReduceOp;

namespace {

const ReduceOp all_ops[] = {ReduceOp::sum, ReduceOp::max, ReduceOp::min};

}  // namespace

TEMPLATE_TEST_CASE("allreduce reduces contiguous views with sum, max and min", "[comm][allreduce]", float, double,
                   trident::bfloat16, trident::float16) {
  const auto comm = world();
  const std::int64_t n = 13;
  const auto send = filled<TestType>("send", n, comm.rank());
  for (ReduceOp op : all_ops) {
    INFO("op " << trident::comm::reduce_op_name(op));
    const auto expected = expected_reduction(comm.size(), n, op);
    Kokkos::View<TestType*, Memory> recv("recv", n);
    trident::comm::allreduce(Space(), comm, send, recv, op);
    CHECK(mismatches(values(recv), expected) == 0);
    CHECK(mismatches(values(send), own_values(comm.rank(), n)) == 0);

    const auto in_place = filled<TestType>("in_place", n, comm.rank());
    trident::comm::allreduce(Space(), comm, in_place, op);
    CHECK(mismatches(values(in_place), expected) == 0);
  }
}

TEMPLATE_TEST_CASE("16-bit floats are summed pair by pair in float and rounded to nearest even", "[comm][allreduce]",
                   trident::bfloat16, trident::float16) {
  const auto comm = world();
  if (comm.size() != 2) return;  // with more ranks the rounding depends on MPI's order of the sums
  // 1 + 2^-m + 2^-(m+1) lies halfway between 1 + 2^-m and 1 + 2^-(m-1) (m: the type's mantissa
  // bits), and ties go to the even one.
  const int m = std::is_same<TestType, trident::bfloat16>::value ? 7 : 10;
  const double ulp = std::ldexp(1.0, -m);
  Kokkos::View<TestType*, Memory> view("view", 3);
  fill(view, [&](std::int64_t i) {
    if (comm.rank() == 0) return i == 2 ? 1.0 + 2 * ulp : 1.0 + ulp;
    return i == 0 ? ulp / 2 : i == 1 ? -ulp / 2 : ulp / 2;
  });
  trident::comm::allreduce(Space(), comm, view, ReduceOp::sum);
  const auto sums = values(view);
  CHECK(sums[0] == 1.0 + 2 * ulp);  // 1 + 1.5 ulp: the tie goes up to the even 1 + 2 ulp
  CHECK(sums[1] == 1.0);            // 1 + 0.5 ulp: down to the even 1
  CHECK(sums[2] == 1.0 + 2 * ulp);  // 1 + 2.5 ulp: down to the even 1 + 2 ulp
  // Far past the largest float16, a sum overflows to infinity: a gradient too large for the
  // type shows as non-finite, which training detects.
  if constexpr (std::is_same<TestType, trident::float16>::value) {
    Kokkos::View<TestType*, Memory> big("big", 1);
    fill(big, [](std::int64_t) { return 40000.0; });
    trident::comm::allreduce(Space(), comm, big, ReduceOp::sum);
    CHECK(std::isinf(values(big)[0]));
  }
}

TEMPLATE_TEST_CASE("allreduce packs and unpacks strided and LayoutLeft views", "[comm][allreduce]", float, double) {
  const auto comm = world();
  const std::size_t rows = 3, cols = 4;
  StridedMatrix<TestType> send("send", rows, cols), recv("recv", rows, cols), in_place("in_place", rows, cols);
  fill(send.view, [&](std::int64_t i) { return value(comm.rank(), i); });
  fill(in_place.view, [&](std::int64_t i) { return value(comm.rank(), i); });
  for (ReduceOp op : all_ops) {
    INFO("op " << trident::comm::reduce_op_name(op));
    const auto expected = expected_reduction(comm.size(), rows * cols, op);
    trident::comm::allreduce(Space(), comm, send.view, recv.view, op);
    CHECK(mismatches(values(recv.view), expected) == 0);
    CHECK(recv.untouched_violations() == 0);
    CHECK(send.untouched_violations() == 0);
  }
  trident::comm::allreduce(Space(), comm, in_place.view, ReduceOp::sum);
  CHECK(mismatches(values(in_place.view), expected_reduction(comm.size(), rows * cols, ReduceOp::sum)) == 0);
  CHECK(in_place.untouched_violations() == 0);

  // Contiguous but column-major: the flattened order is still row-major in the indices.
  Kokkos::View<TestType***, Kokkos::LayoutLeft, Memory> left("left", 2, 3, 2);
  fill(left, [&](std::int64_t i) { return value(comm.rank(), i); });
  Kokkos::View<TestType***, Kokkos::LayoutRight, Memory> right("right", 2, 3, 2);
  trident::comm::allreduce(Space(), comm, left, right, ReduceOp::max);
  CHECK(mismatches(values(right), expected_reduction(comm.size(), 12, ReduceOp::max)) == 0);
}

TEST_CASE("allreduce reduces integer views exactly", "[comm][allreduce]") {
  const auto comm = world();
  const std::int64_t big = std::int64_t(1) << 40;  // beyond int32 and float's exact range
  Kokkos::View<std::int64_t*, Memory> wide("wide", 3);
  fill(wide, [&](std::int64_t i) { return big * (comm.rank() + 1) + i; });
  trident::comm::allreduce(Space(), comm, wide, ReduceOp::sum);
  const std::int64_t ranks = comm.size();
  const auto summed = values(wide);
  for (std::int64_t i = 0; i < 3; ++i) {
    // Through double only for comparison: the true sum is below 2^53.
    CHECK(summed[static_cast<std::size_t>(i)] == static_cast<double>(big * ranks * (ranks + 1) / 2 + ranks * i));
  }

  Kokkos::View<std::uint8_t*, Memory> bytes("bytes", 4), largest("largest", 4);
  fill(bytes, [&](std::int64_t i) { return (comm.rank() * 37 + i * 101) % 256; });
  trident::comm::allreduce(Space(), comm, bytes, largest, ReduceOp::max);
  std::vector<double> expected(4, 0);
  for (int r = 0; r < comm.size(); ++r)
    for (std::size_t i = 0; i < 4; ++i) expected[i] = std::max(expected[i], double((r * 37 + i * 101) % 256));
  CHECK(mismatches(values(largest), expected) == 0);
}

TEMPLATE_TEST_CASE("allgather concatenates every rank's view in rank order", "[comm][allgather]", float, double,
                   trident::bfloat16) {
  const auto comm = world();
  const int size = comm.size();
  const std::int64_t n = 5;
  const auto expected = expected_concatenation(std::vector<int>(static_cast<std::size_t>(size), n));

  const auto send = filled<TestType>("send", n, comm.rank());
  Kokkos::View<TestType*, Memory> recv("recv", size * n);
  trident::comm::allgather(Space(), comm, send, recv);
  CHECK(mismatches(values(recv), expected) == 0);

  // In place: this rank's block already sits at its position.
  Kokkos::View<TestType*, Memory> in_place("in_place", size * n);
  fill(in_place, [&](std::int64_t i) { return i / n == comm.rank() ? value(comm.rank(), i % n) : sentinel; });
  trident::comm::allgather(Space(), comm, in_place);
  CHECK(mismatches(values(in_place), expected) == 0);
}

TEMPLATE_TEST_CASE("allgather packs strided and LayoutLeft views", "[comm][allgather]", float, double) {
  const auto comm = world();
  const int size = comm.size();
  const std::size_t rows = 2, cols = 3;
  const auto expected = expected_concatenation(std::vector<int>(static_cast<std::size_t>(size), rows * cols));

  StridedMatrix<TestType> send("send", rows, cols), recv("recv", size * rows, cols);
  fill(send.view, [&](std::int64_t i) { return value(comm.rank(), i); });
  trident::comm::allgather(Space(), comm, send.view, recv.view);
  CHECK(mismatches(values(recv.view), expected) == 0);
  CHECK(recv.untouched_violations() == 0);

  // A column-major (2, 3) block travels in row-major order into a (size * 2, 3) matrix.
  Kokkos::View<TestType**, Kokkos::LayoutLeft, Memory> left("left", rows, cols);
  fill(left, [&](std::int64_t i) { return value(comm.rank(), i); });
  Kokkos::View<TestType**, Memory> gathered("gathered", size * rows, cols);
  trident::comm::allgather(Space(), comm, left, gathered);
  CHECK(mismatches(values(gathered), expected) == 0);

  StridedMatrix<TestType> in_place("in_place", size * rows, cols);
  fill(in_place.view, [&](std::int64_t i) {
    return i / std::int64_t(rows * cols) == comm.rank() ? value(comm.rank(), i % (rows * cols)) : sentinel;
  });
  trident::comm::allgather(Space(), comm, in_place.view);
  CHECK(mismatches(values(in_place.view), expected) == 0);
  CHECK(in_place.untouched_violations() == 0);
}

TEMPLATE_TEST_CASE("allgatherv concatenates uneven blocks", "[comm][allgather]", float, double) {
  const auto comm = world();
  std::vector<int> counts;
  for (int r = 0; r < comm.size(); ++r) counts.push_back(r % 3 == 1 ? 0 : r + 1);  // 1, 0, 3, 4, 0, ...
  const auto expected = expected_concatenation(counts);
  const auto send = filled<TestType>("send", counts[static_cast<std::size_t>(comm.rank())], comm.rank());
  Kokkos::View<TestType*, Memory> recv("recv", expected.size());
  trident::comm::allgatherv(Space(), comm, send, recv, counts);
  CHECK(mismatches(values(recv), expected) == 0);

  StridedMatrix<TestType> strided("strided", 1, expected.size());
  trident::comm::allgatherv(Space(), comm, send, strided.view, counts);
  CHECK(mismatches(values(strided.view), expected) == 0);
  CHECK(strided.untouched_violations() == 0);
}

TEMPLATE_TEST_CASE("reduce_scatter leaves rank r the reduction of block r", "[comm][reduce_scatter]", float, double,
                   trident::bfloat16, trident::float16) {
  const auto comm = world();
  const int size = comm.size(), rank = comm.rank();
  const std::int64_t block = 3;
  const auto send = filled<TestType>("send", size * block, rank);
  for (ReduceOp op : all_ops) {
    INFO("op " << trident::comm::reduce_op_name(op));
    const auto expected = expected_reduction(size, block, op, rank * block);
    Kokkos::View<TestType*, Memory> recv("recv", block);
    trident::comm::reduce_scatter(Space(), comm, send, recv, op);
    CHECK(mismatches(values(recv), expected) == 0);
  }

  // Strided on both sides: a (size, block) matrix whose row r is block r.
  StridedMatrix<TestType> strided_send("strided_send", size, block), strided_recv("strided_recv", 1, block);
  fill(strided_send.view, [&](std::int64_t i) { return value(rank, i); });
  trident::comm::reduce_scatter(Space(), comm, strided_send.view, strided_recv.view, ReduceOp::sum);
  CHECK(mismatches(values(strided_recv.view), expected_reduction(size, block, ReduceOp::sum, rank * block)) == 0);
  CHECK(strided_recv.untouched_violations() == 0);
}

TEMPLATE_TEST_CASE("reduce_scatter_v leaves rank r the reduction of its uneven block", "[comm][reduce_scatter]", float,
                   double, trident::bfloat16, trident::float16) {
  const auto comm = world();
  const int size = comm.size(), rank = comm.rank();
  std::vector<int> counts, offsets;
  int total = 0;
  for (int r = 0; r < size; ++r) {
    counts.push_back(r % 3);  // 0, 1, 2, 0, ...
    offsets.push_back(total);
    total += counts.back();
  }
  const auto send = filled<TestType>("send", total, rank);
  const int mine = counts[static_cast<std::size_t>(rank)];
  Kokkos::View<TestType*, Memory> recv("recv", mine);
  trident::comm::reduce_scatter_v(Space(), comm, send, recv, counts, ReduceOp::sum);
  CHECK(mismatches(values(recv), expected_reduction(size, mine, ReduceOp::sum, offsets[std::size_t(rank)])) == 0);
}

TEMPLATE_TEST_CASE("broadcast copies the root's view to every rank", "[comm][broadcast]", float, double,
                   trident::float16) {
  const auto comm = world();
  for (int root : {0, comm.size() - 1}) {
    INFO("root " << root);
    const std::int64_t n = 7;
    Kokkos::View<TestType*, Memory> view("view", n);
    fill(view, [&](std::int64_t i) { return comm.rank() == root ? value(root, i) : sentinel; });
    trident::comm::broadcast(Space(), comm, view, root);
    CHECK(mismatches(values(view), own_values(root, n)) == 0);

    StridedMatrix<TestType> strided("strided", 2, 3);
    fill(strided.view, [&](std::int64_t i) { return comm.rank() == root ? value(root, i) : 0.0; });
    trident::comm::broadcast(Space(), comm, strided.view, root);
    CHECK(mismatches(values(strided.view), own_values(root, 6)) == 0);
    CHECK(strided.untouched_violations() == 0);
  }
}

TEMPLATE_TEST_CASE("alltoall sends block q to rank q", "[comm][alltoall]", float, double) {
  const auto comm = world();
  const int size = comm.size(), rank = comm.rank();
  const std::int64_t block = 2;
  // Rank r's element k of block q is 100 r + 10 q + k; rank q receives it as its block r.
  auto message = [](int from, int to, std::int64_t k) { return 100.0 * from + 10.0 * to + k; };
  Kokkos::View<TestType*, Memory> send("send", size * block), recv("recv", size * block);
  fill(send, [&](std::int64_t i) { return message(rank, static_cast<int>(i / block), i % block); });
  std::vector<double> expected;
  for (int q = 0; q < size; ++q)
    for (std::int64_t k = 0; k < block; ++k) expected.push_back(message(q, rank, k));
  trident::comm::alltoall(Space(), comm, send, recv);
  CHECK(mismatches(values(recv), expected) == 0);

  StridedMatrix<TestType> strided("strided", size, block);
  trident::comm::alltoall(Space(), comm, send, strided.view);
  CHECK(mismatches(values(strided.view), expected) == 0);
  CHECK(strided.untouched_violations() == 0);
}

TEST_CASE("collectives accept empty views", "[comm]") {
  const auto comm = world();
  Kokkos::View<float*, Memory> empty_send("empty_send", 0), empty_recv("empty_recv", 0);
  trident::comm::allreduce(Space(), comm, empty_send, empty_recv);
  trident::comm::allgather(Space(), comm, empty_send, empty_recv);
  trident::comm::broadcast(Space(), comm, empty_recv, 0);
  CHECK(comm.stats()[trident::comm::Operation::allreduce].calls == 1);
  CHECK(comm.stats()[trident::comm::Operation::allreduce].bytes == 0);
}
