// The consistency check turns a desynchronised collective into the same trident::Error on every
// rank, naming both calls, instead of a hang or a silent wrong result.

#include "comm_test_helpers.hpp"

#include <trident/core/random.hpp>

#include <cstdlib>
#include <string>

using namespace comm_test;
using trident::comm::Operation;
using trident::comm::ReduceOp;

namespace {

// Runs `call` and returns the trident::Error message it threw ("" when it did not throw).
template <class Call>
std::string error_of(Call call) {
  try {
    call();
  } catch (const trident::Error& error) {
    return error.what();
  }
  return "";
}

// Every rank saw the same non-empty message.
bool same_message_everywhere(const std::string& message) {
  const std::uint64_t hash = trident::stable_hash(message);
  std::uint64_t low = hash, high = hash;
  MPI_Allreduce(MPI_IN_PLACE, &low, 1, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD);
  MPI_Allreduce(MPI_IN_PLACE, &high, 1, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
  return trident_test::all_ranks(!message.empty() && low == high);
}

}  // namespace

TEST_CASE("matched collectives pass the consistency check", "[comm][consistency]") {
  auto comm = world().duplicate("checked");
  comm.set_consistency_check(true);
  const int p = comm.size();
  Kokkos::View<float*, Memory> a("a", 4 * p), b("b", 4 * p), block("block", 4);
  trident::comm::allreduce(Space(), comm, a, b, ReduceOp::max);
  trident::comm::allgather(Space(), comm, block, a);
  trident::comm::reduce_scatter(Space(), comm, a, block);
  trident::comm::broadcast(Space(), comm, a, p - 1);
  trident::comm::alltoall(Space(), comm, a, b);
  std::vector<int> counts(static_cast<std::size_t>(p), 4);
  trident::comm::allgatherv(Space(), comm, block, a, counts);
  trident::comm::reduce_scatter_v(Space(), comm, a, block, counts);
  auto request = trident::comm::iallreduce(Space(), comm, a);
  request.wait();
  comm.barrier();
  CHECK(comm.collective_calls() == 9);
  CHECK(comm.stats().total_calls() == 9);
}

TEST_CASE("different collectives on different ranks raise the same error everywhere", "[comm][consistency]") {
  auto comm = world().duplicate("tp");
  if (comm.size() < 2) return;
  comm.set_consistency_check(true);
  const int p = comm.size();
  Kokkos::View<float*, Memory> twelve("twelve", 12), twelve_out("twelve_out", 12), ten("ten", 10),
      gathered("gathered", 10 * p);
  comm.barrier();
  comm.barrier();  // this communicator's calls #1 and #2
  const std::string message = error_of([&] {
    if (comm.rank() == 0) {
      trident::comm::allreduce(Space(), comm, twelve, twelve_out);
    } else {
      trident::comm::allgather(Space(), comm, ten, gathered);
    }
  });
  CHECK(message ==
        "trident::comm: collective mismatch on communicator 'tp' at call #3: rank 0 called allreduce(12 x float, sum) "
        "but rank 1 called allgather(10 x float)");
  CHECK(same_message_everywhere(message));
  // Nothing was transferred or counted, and the communicator still works.
  CHECK(comm.stats()[Operation::allreduce].calls == 0);
  CHECK(comm.stats()[Operation::allgather].calls == 0);
  trident::comm::allreduce(Space(), comm, twelve, twelve_out);
  CHECK(comm.stats()[Operation::allreduce].calls == 1);
}

TEST_CASE("different sizes, roots and reductions are caught", "[comm][consistency]") {
  auto comm = world().duplicate("dp");
  if (comm.size() < 2) return;
  comm.set_consistency_check(true);
  const int rank = comm.rank();
  const int last = comm.size() - 1;
  Kokkos::View<double*, Memory> longer("longer", 12), shorter("shorter", 10);

  // The last rank is the odd one out: rank 0 is compared with it.
  std::string message =
      error_of([&] { trident::comm::allreduce(Space(), comm, rank == last ? shorter : longer, ReduceOp::sum); });
  CHECK(message ==
        "trident::comm: collective mismatch on communicator 'dp' at call #1: rank 0 called allreduce(12 x "
        "double, sum) but rank " +
            std::to_string(last) + " called allreduce(10 x double, sum)");
  CHECK(same_message_everywhere(message));

  message = error_of([&] { trident::comm::broadcast(Space(), comm, longer, rank == last ? 1 : 0); });
  CHECK_THAT(message, Catch::Matchers::Contains("rank 0 called broadcast(12 x double, root 0) but rank " +
                                                std::to_string(last) + " called broadcast(12 x double, root 1)"));
  CHECK(same_message_everywhere(message));

  message = error_of([&] {
    auto request = trident::comm::iallreduce(Space(), comm, longer, rank == last ? ReduceOp::min : ReduceOp::max);
    request.wait();
  });
  CHECK_THAT(message, Catch::Matchers::Contains("called allreduce(12 x double, max) but rank " + std::to_string(last) +
                                                " called allreduce(12 x double, min)"));
  CHECK(same_message_everywhere(message));
}

TEST_CASE("the mismatch message names both call numbers when they differ", "[comm][consistency]") {
  trident::comm::Fingerprint a =
      trident::comm::make_fingerprint(Operation::allreduce, trident::comm::ElementType::float32, 12, ReduceOp::sum);
  trident::comm::Fingerprint b =
      trident::comm::make_fingerprint(Operation::barrier, trident::comm::ElementType::none, 0);
  a.sequence = 4;
  b.sequence = 3;
  CHECK(trident::comm::Impl::mismatch_message("pp", a, 0, b, 2) ==
        "trident::comm: collective mismatch on communicator 'pp': rank 0 called allreduce(12 x float, sum) as call #4 "
        "but rank 2 called barrier() as call #3");
}

TEST_CASE("TRIDENT_COMM_CHECK=1 turns the check on for new communicators", "[comm][consistency]") {
  trident::comm::Communicator comm, split, unchecked;
  {
    const ScopedEnvironment check("TRIDENT_COMM_CHECK", "1");
    comm = world("env");
    split = comm.split(0, comm.rank());
    check.set("0");
    unchecked = world("env");
    check.set("maybe");
    CHECK_THROWS_WITH(world("env"), "trident::comm: TRIDENT_COMM_CHECK must be 0 or 1, got 'maybe'");
  }
  CHECK(comm.consistency_check());
  CHECK(split.consistency_check());
  CHECK_FALSE(unchecked.consistency_check());
  if (comm.size() < 2) return;
  Kokkos::View<int*, Memory> small("small", 2), large("large", 3);
  const std::string message =
      error_of([&] { trident::comm::broadcast(Space(), comm, comm.rank() == 0 ? small : large, 0); });
  CHECK_THAT(message, Catch::Matchers::Contains("rank 0 called broadcast(2 x int32, root 0) but rank 1 called "
                                                "broadcast(3 x int32, root 0)"));
  CHECK(same_message_everywhere(message));
}
