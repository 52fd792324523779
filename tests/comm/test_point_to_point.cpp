// Point-to-point transfers: a ring with sendrecv, paired send/recv into strided views, several
// isend/irecv in flight, and the error for a message shorter than the receiving view.

#include "comm_test_helpers.hpp"

#include <cstdint>
#include <vector>

using namespace comm_test;

TEMPLATE_TEST_CASE("sendrecv shifts views around a ring", "[comm][p2p]", float, double) {
  const auto comm = world();
  const int size = comm.size(), rank = comm.rank();
  const int right = (rank + 1) % size, left = (rank + size - 1) % size;
  const std::int64_t n = 6;
  const auto send = filled<TestType>("send", n, rank);
  Kokkos::View<TestType*, Memory> recv("recv", n);
  trident::comm::sendrecv(Space(), comm, send, right, recv, left, 3);
  CHECK(mismatches(values(recv), own_values(left, n)) == 0);

  StridedMatrix<TestType> strided_send("strided_send", 2, 3), strided_recv("strided_recv", 2, 3);
  fill(strided_send.view, [&](std::int64_t i) { return value(rank, i); });
  // The other way round, strided on both ends.
  trident::comm::sendrecv(Space(), comm, strided_send.view, left, strided_recv.view, right);
  CHECK(mismatches(values(strided_recv.view), own_values(right, n)) == 0);
  CHECK(strided_recv.untouched_violations() == 0);
}

TEMPLATE_TEST_CASE("send and recv pair even ranks with odd ranks", "[comm][p2p]", float, double) {
  const auto comm = world();
  const int size = comm.size(), rank = comm.rank();
  const bool even = rank % 2 == 0;
  const int partner = even ? rank + 1 : rank - 1;
  if (partner < size) {
    const auto mine = filled<TestType>("mine", 5, rank);
    StridedMatrix<TestType> theirs("theirs", 1, 5);
    // Even ranks send first, odd ranks receive first: blocking calls cannot deadlock.
    if (even) {
      trident::comm::send(Space(), comm, mine, partner, 7);
      trident::comm::recv(Space(), comm, theirs.view, partner, 8);
    } else {
      trident::comm::recv(Space(), comm, theirs.view, partner, 7);
      trident::comm::send(Space(), comm, mine, partner, 8);
    }
    CHECK(mismatches(values(theirs.view), own_values(partner, 5)) == 0);
    CHECK(theirs.untouched_violations() == 0);
  }
  CHECK(trident_test::all_ranks(true));
}

TEST_CASE("several isend/irecv in flight complete in any order", "[comm][p2p][nonblocking]") {
  const auto comm = world();
  const int size = comm.size(), rank = comm.rank();
  const int right = (rank + 1) % size, left = (rank + size - 1) % size;
  const int messages = 3;
  std::vector<Kokkos::View<double*, Memory>> sends;
  std::vector<StridedMatrix<double>> recvs;
  std::vector<trident::comm::Request> requests;
  for (int m = 0; m < messages; ++m) {
    recvs.emplace_back("recv", 1, 4 + m);
    sends.push_back(filled<double>("send", 4 + m, rank, 100 * m));
  }
  // Receives posted in reverse tag order; sends in forward order: tags do the matching.
  for (int m = messages - 1; m >= 0; --m)
    requests.push_back(trident::comm::irecv(Space(), comm, recvs[std::size_t(m)].view, left, m));
  for (int m = 0; m < messages; ++m)
    requests.push_back(trident::comm::isend(Space(), comm, sends[std::size_t(m)], right, m));
  trident::comm::wait_all(requests);
  for (int m = 0; m < messages; ++m) {
    INFO("message " << m);
    CHECK(mismatches(values(recvs[std::size_t(m)].view), own_values(left, 4 + m, 100 * m)) == 0);
    CHECK(recvs[std::size_t(m)].untouched_violations() == 0);
  }
  const auto& stats = comm.stats();
  CHECK(stats[trident::comm::Operation::send].calls == messages);
  CHECK(stats[trident::comm::Operation::recv].bytes == (4 + 5 + 6) * std::int64_t(sizeof(double)));
}

TEST_CASE("a message shorter than the receiving view is an error", "[comm][p2p]") {
  const auto comm = world();
  if (comm.size() < 2) return;
  const int rank = comm.rank();
  if (rank == 0) {
    trident::comm::send(Space(), comm, filled<float>("short", 3, rank), 1, 5);
    trident::comm::send(Space(), comm, filled<float>("short", 3, rank), 1, 6);
  } else if (rank == 1) {
    Kokkos::View<float*, Memory> longer("longer", 5);
    CHECK_THROWS_WITH(trident::comm::recv(Space(), comm, longer, 0, 5),
                      "trident::comm::recv on communicator 'world': expected 5 x float from rank 0 (tag 5) but the "
                      "message holds 3");
    auto request = trident::comm::irecv(Space(), comm, longer, 0, 6);
    CHECK_THROWS_AS(request.wait(), trident::Error);
  }
  CHECK(trident_test::all_ranks(true));
}
