// Arguments that cannot work are refused on the calling rank, before any MPI call, with a
// trident::InvalidArgument naming the operation and the sizes; nothing is counted.

#include "comm_test_helpers.hpp"

#include <vector>

using namespace comm_test;
using Catch::Matchers::Contains;

namespace {

// An InvalidArgument whose message contains every one of `parts`.
template <class Call>
void check_refused(Call call, const std::vector<std::string>& parts) {
  std::string message;
  try {
    call();
  } catch (const trident::InvalidArgument& error) {
    message = error.what();
  }
  INFO("message: " << message);
  CHECK_FALSE(message.empty());
  for (const auto& part : parts) CHECK_THAT(message, Contains(part));
}

}  // namespace

TEST_CASE("mismatched lengths are refused before any MPI call", "[comm][errors]") {
  const auto comm = world().duplicate("tp");
  const int p = comm.size();
  const std::string size = std::to_string(p);
  Kokkos::View<float*, Memory> twelve("twelve", 12), ten("ten", 10), three("three", 3);

  check_refused([&] { trident::comm::allreduce(Space(), comm, twelve, ten); },
                {"trident::comm::allreduce on communicator 'tp': send has 12 elements but recv has 10"});
  check_refused([&] { trident::comm::allgather(Space(), comm, three, ten); },
                {"trident::comm::allgather on communicator 'tp' (size " + size + "): recv has 10 elements but needs " +
                 size + " x 3 = " + std::to_string(3 * p)});
  Kokkos::View<float*, Memory> odd("odd", 3 * p + 1);
  if (p > 1) {  // one rank takes any number of elements as one block
    check_refused([&] { trident::comm::allgather(Space(), comm, odd); },
                  {"trident::comm::allgather (in place)",
                   std::to_string(3 * p + 1) + " elements do not split into " + size + " equal blocks"});
  }
  check_refused([&] { trident::comm::reduce_scatter(Space(), comm, ten, three); },
                {"trident::comm::reduce_scatter on communicator 'tp' (size " + size +
                 "): send has 10 elements but needs " + size + " x 3 = " + std::to_string(3 * p)});
  check_refused([&] { auto r = trident::comm::ialltoall(Space(), comm, odd, ten); },
                {"trident::comm::alltoall on communicator 'tp' (size " + size + "): send has " +
                 std::to_string(3 * p + 1) + " elements and recv has 10; both need the same multiple of " + size});
  check_refused([&] { trident::comm::broadcast(Space(), comm, ten, p); },
                {"trident::comm::broadcast on communicator 'tp': root " + size +
                 " is not a rank of a communicator of size " + size});
  check_refused([&] { trident::comm::send(Space(), comm, ten, -1); }, {"trident::comm::send", "dest -1"});
  check_refused([&] { trident::comm::recv(Space(), comm, ten, p, 0); }, {"trident::comm::recv", "source " + size});
  check_refused([&] { trident::comm::send(Space(), comm, ten, 0, -4); }, {"tag -4 is negative"});

  CHECK(comm.stats().total_calls() == 0);
  CHECK(comm.collective_calls() == 0);
}

TEST_CASE("uneven counts that do not fit are refused", "[comm][errors]") {
  const auto comm = world().duplicate("dp");
  const int p = comm.size(), rank = comm.rank();
  Kokkos::View<double*, Memory> two("two", 2), many("many", 2 * p);
  std::vector<int> twos(static_cast<std::size_t>(p), 2);

  check_refused([&] { trident::comm::allgatherv(Space(), comm, two, many, std::vector<int>(p + 1, 2)); },
                {"trident::comm::allgatherv on communicator 'dp': counts has " + std::to_string(p + 1) +
                 " entries but the communicator has " + std::to_string(p) + " ranks"});
  auto negative = twos;
  negative[0] = -1;
  check_refused([&] { trident::comm::allgatherv(Space(), comm, two, many, negative); },
                {"counts[0] is -1, a count cannot be negative"});
  auto wrong_mine = twos;
  wrong_mine[static_cast<std::size_t>(rank)] = 3;
  check_refused([&] { trident::comm::allgatherv(Space(), comm, two, many, wrong_mine); },
                {"rank " + std::to_string(rank) + " sends 2 elements but counts[" + std::to_string(rank) + "] is 3"});
  Kokkos::View<double*, Memory> short_recv("short_recv", 2 * p - 1);
  check_refused(
      [&] { trident::comm::allgatherv(Space(), comm, two, short_recv, twos); },
      {"recv has " + std::to_string(2 * p - 1) + " elements but the counts add up to " + std::to_string(2 * p)});
  check_refused([&] { trident::comm::reduce_scatter_v(Space(), comm, short_recv, two, twos); },
                {"trident::comm::reduce_scatter_v", "send has " + std::to_string(2 * p - 1) +
                                                        " elements but the counts add up to " + std::to_string(2 * p)});
  CHECK(comm.stats().total_calls() == 0);
}

TEST_CASE("overlapping send and recv and null communicators are refused", "[comm][errors]") {
  const auto comm = world();
  Kokkos::View<float*, Memory> buffer("buffer", 8);
  auto front = Kokkos::subview(buffer, Kokkos::make_pair(0, 4));
  auto middle = Kokkos::subview(buffer, Kokkos::make_pair(2, 6));
  check_refused([&] { trident::comm::allreduce(Space(), comm, front, middle); },
                {"trident::comm::allreduce: send and recv share memory; use the in-place form"});
  const trident::comm::Communicator null;
  CHECK_FALSE(null.valid());
  check_refused([&] { trident::comm::allreduce(Space(), null, buffer); },
                {"trident::comm: operation on a null communicator"});
  check_refused([&] { trident::comm::Communicator wrapped(MPI_COMM_NULL); }, {"cannot wrap MPI_COMM_NULL"});
}
