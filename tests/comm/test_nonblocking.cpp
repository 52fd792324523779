// Nonblocking collectives: several in flight at once on strided and contiguous views, finished
// by wait_all, wait, test or a Request's destructor; temporaries outlive the caller's handles.

#include "comm_test_helpers.hpp"

#include <cstdint>
#include <utility>
#include <vector>

using namespace comm_test;
using trident::comm::ReduceOp;

TEST_CASE("many nonblocking collectives in flight finish with wait_all", "[comm][nonblocking]") {
  const auto comm = world();
  const int size = comm.size(), rank = comm.rank();
  const std::size_t rows = 2, cols = 3, n = rows * cols;

  StridedMatrix<float> reduce_in_place("reduce_in_place", rows, cols);
  fill(reduce_in_place.view, [&](std::int64_t i) { return value(rank, i); });
  const auto gather_send = filled<double>("gather_send", n, rank);
  StridedMatrix<double> gather_recv("gather_recv", size * rows, cols);
  const auto scatter_send = filled<float>("scatter_send", size * n, rank);
  StridedMatrix<float> scatter_recv("scatter_recv", rows, cols);
  const int root = size - 1;
  Kokkos::View<double*, Memory> broadcast_view("broadcast_view", n);
  fill(broadcast_view, [&](std::int64_t i) { return rank == root ? value(root, i) : sentinel; });
  const auto exchange_send = filled<float>("exchange_send", size * 2, rank);
  Kokkos::View<float*, Memory> exchange_recv("exchange_recv", size * 2);
  std::vector<int> counts(static_cast<std::size_t>(size), 2);
  const auto gatherv_send = filled<float>("gatherv_send", 2, rank);
  Kokkos::View<float*, Memory> gatherv_recv("gatherv_recv", size * 2);
  const auto scatterv_send = filled<double>("scatterv_send", size * 2, rank);
  Kokkos::View<double*, Memory> scatterv_recv("scatterv_recv", 2);

  std::vector<trident::comm::Request> requests;
  requests.push_back(trident::comm::iallreduce(Space(), comm, reduce_in_place.view, ReduceOp::sum));
  requests.push_back(trident::comm::iallgather(Space(), comm, gather_send, gather_recv.view));
  requests.push_back(trident::comm::ireduce_scatter(Space(), comm, scatter_send, scatter_recv.view, ReduceOp::sum));
  requests.push_back(trident::comm::ibroadcast(Space(), comm, broadcast_view, root));
  requests.push_back(trident::comm::ialltoall(Space(), comm, exchange_send, exchange_recv));
  requests.push_back(trident::comm::iallgatherv(Space(), comm, gatherv_send, gatherv_recv, counts));
  requests.push_back(trident::comm::ireduce_scatter_v(Space(), comm, scatterv_send, scatterv_recv, counts));
  for (const auto& request : requests) CHECK(request.pending());
  trident::comm::wait_all(requests);
  for (const auto& request : requests) CHECK_FALSE(request.pending());

  CHECK(mismatches(values(reduce_in_place.view), expected_reduction(size, n)) == 0);
  CHECK(reduce_in_place.untouched_violations() == 0);
  CHECK(mismatches(values(gather_recv.view), expected_concatenation(std::vector<int>(std::size_t(size), int(n)))) == 0);
  CHECK(gather_recv.untouched_violations() == 0);
  CHECK(mismatches(values(scatter_recv.view), expected_reduction(size, n, ReduceOp::sum, rank * std::int64_t(n))) == 0);
  CHECK(scatter_recv.untouched_violations() == 0);
  CHECK(mismatches(values(broadcast_view), own_values(root, n)) == 0);
  std::vector<double> exchanged;
  for (int q = 0; q < size; ++q)
    for (int k = 0; k < 2; ++k) exchanged.push_back(value(q, rank * 2 + k));
  CHECK(mismatches(values(exchange_recv), exchanged) == 0);
  CHECK(mismatches(values(gatherv_recv), expected_concatenation(counts)) == 0);
  CHECK(mismatches(values(scatterv_recv), expected_reduction(size, 2, ReduceOp::sum, rank * 2)) == 0);
}

TEST_CASE("a request keeps its buffers alive after the caller drops its views", "[comm][nonblocking]") {
  const auto comm = world();
  const std::int64_t n = 9;
  Kokkos::View<double*, Memory> result("result", n);
  trident::comm::Request request;
  {
    // The only handles to the send view and the packed temporary of the strided receive die here.
    const auto send = filled<double>("send", n, comm.rank());
    StridedMatrix<double> strided("strided", 1, n);
    request = trident::comm::iallreduce(Space(), comm, send, strided.view, ReduceOp::sum);
    result = Kokkos::subview(strided.base, 0, Kokkos::pair<std::size_t, std::size_t>(0, 2 * n));
  }
  request.wait();
  const auto all = values(result);
  std::vector<double> even;
  for (std::int64_t i = 0; i < n; ++i) even.push_back(all[static_cast<std::size_t>(2 * i)]);
  CHECK(mismatches(even, expected_reduction(comm.size(), n)) == 0);
}

TEST_CASE("test() polls a request to completion; a destroyed request finishes its work", "[comm][nonblocking]") {
  const auto comm = world();
  const std::int64_t n = 4;
  StridedMatrix<float> polled("polled", 1, n);
  fill(polled.view, [&](std::int64_t i) { return value(comm.rank(), i); });
  auto request = trident::comm::iallreduce(Space(), comm, polled.view);
  int polls = 0;
  while (!request.test()) ++polls;
  INFO("completed after " << polls << " unsuccessful polls");
  CHECK_FALSE(request.pending());
  CHECK(request.test());
  CHECK(mismatches(values(polled.view), expected_reduction(comm.size(), n)) == 0);

  StridedMatrix<float> abandoned("abandoned", 1, n);
  fill(abandoned.view, [&](std::int64_t i) { return value(comm.rank(), i); });
  {
    auto dropped = trident::comm::iallreduce(Space(), comm, abandoned.view);
    auto moved = std::move(dropped);
    CHECK_FALSE(dropped.pending());
    CHECK(moved.pending());
  }  // `moved` waits here and unpacks into the strided view
  CHECK(mismatches(values(abandoned.view), expected_reduction(comm.size(), n)) == 0);
}
