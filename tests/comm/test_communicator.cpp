// Communicator: wrapping, split, duplicate, the null communicator, exact traffic counters,
// the transports (host staging forced on this host-only machine) and the GPU-awareness switch.

#include "comm_test_helpers.hpp"
#include "execution_spaces.hpp"

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <thread>
#include <vector>

using namespace comm_test;
using trident::comm::Operation;
using trident::comm::ReduceOp;
using trident::comm::Transport;

namespace {

// The world ranks of a communicator's members, in its rank order.
std::vector<int> members(const trident::comm::Communicator& comm) {
  std::vector<int> result(static_cast<std::size_t>(comm.size()));
  int me = trident_test::world_rank();
  MPI_Allgather(&me, 1, MPI_INT, result.data(), 1, MPI_INT, comm.mpi());
  return result;
}

}  // namespace

TEST_CASE("a Communicator wraps the communicator it is given", "[comm][communicator]") {
  const trident::comm::Communicator comm(MPI_COMM_WORLD);
  CHECK(comm.valid());
  CHECK(comm.mpi() == MPI_COMM_WORLD);
  CHECK(comm.rank() == trident_test::world_rank());
  CHECK(comm.size() == trident_test::world_size());
  CHECK(comm.label().empty());
  CHECK(comm.name() == "unnamed");
  CHECK(comm.transport() == Transport::automatic);
  CHECK(world("tp").name() == "tp");
}

TEST_CASE("split groups ranks by color and orders them by key", "[comm][communicator]") {
  const auto comm = world();
  const int rank = comm.rank(), size = comm.size();
  const auto parity = comm.split(rank % 2, -rank, "parity");  // key -rank: reversed order
  std::vector<int> expected;
  for (int r = size - 1; r >= 0; --r)
    if (r % 2 == rank % 2) expected.push_back(r);
  CHECK(parity.label() == "parity");
  CHECK(parity.size() == static_cast<int>(expected.size()));
  CHECK(members(parity) == expected);
  int compare = MPI_UNEQUAL;
  MPI_Comm_compare(parity.mpi(), MPI_COMM_WORLD, &compare);
  CHECK(compare == (size == 1 ? MPI_CONGRUENT : MPI_UNEQUAL));

  const auto only_even = comm.split(rank % 2 == 0 ? 0 : MPI_UNDEFINED, rank);
  CHECK(only_even.valid() == (rank % 2 == 0));
  if (!only_even.valid()) CHECK_THROWS_AS(only_even.size(), trident::InvalidArgument);
}

TEST_CASE("duplicate gives a congruent communicator with its own counters", "[comm][communicator]") {
  auto comm = world("base");
  comm.set_transport(Transport::host_staged);
  comm.set_consistency_check(true);
  const auto copy = comm.duplicate();
  int compare = MPI_UNEQUAL;
  MPI_Comm_compare(copy.mpi(), MPI_COMM_WORLD, &compare);
  CHECK(compare == MPI_CONGRUENT);
  CHECK(copy.mpi() != MPI_COMM_WORLD);
  CHECK(copy.label() == "base");
  CHECK(copy.transport() == Transport::host_staged);
  CHECK(copy.consistency_check());
  CHECK(comm.duplicate("renamed").label() == "renamed");

  copy.barrier();
  CHECK(copy.stats()[Operation::barrier].calls == 1);
  CHECK(comm.stats()[Operation::barrier].calls == 0);
  // Copies of a handle share everything.
  const auto alias = copy;
  alias.barrier();
  CHECK(copy.stats()[Operation::barrier].calls == 2);
  CHECK(copy.collective_calls() == 2);
}

TEST_CASE("traffic counters are exact for every operation", "[comm][statistics]") {
  const auto comm = world().duplicate("stats");
  const std::int64_t p = comm.size();
  const int rank = comm.rank();
  const std::int64_t f = sizeof(float), d = sizeof(double);

  Kokkos::View<float*, Memory> six("six", 6), six_out("six_out", 6);
  trident::comm::allreduce(Space(), comm, six, six_out);
  trident::comm::allreduce(Space(), comm, six, ReduceOp::max);
  Kokkos::View<float*, Memory> three("three", 3), gathered("gathered", 3 * p);
  trident::comm::allgather(Space(), comm, three, gathered);
  Kokkos::View<double*, Memory> gathered_in_place("gathered_in_place", 2 * p);
  trident::comm::allgather(Space(), comm, gathered_in_place);
  std::vector<int> counts;
  for (int r = 0; r < p; ++r) counts.push_back(r + 1);
  Kokkos::View<double*, Memory> v_send("v_send", rank + 1), v_recv("v_recv", p * (p + 1) / 2);
  trident::comm::allgatherv(Space(), comm, v_send, v_recv, counts);
  Kokkos::View<float*, Memory> scatter_send("scatter_send", 2 * p), scatter_recv("scatter_recv", 2);
  trident::comm::reduce_scatter(Space(), comm, scatter_send, scatter_recv);
  trident::comm::reduce_scatter_v(Space(), comm, v_recv, v_send, counts);
  Kokkos::View<std::int32_t*, Memory> five("five", 5);
  trident::comm::broadcast(Space(), comm, five, 0);
  Kokkos::View<std::int64_t*, Memory> exchange_send("exchange_send", 2 * p), exchange_recv("exchange_recv", 2 * p);
  trident::comm::alltoall(Space(), comm, exchange_send, exchange_recv);
  comm.barrier();
  Kokkos::View<float*, Memory> ring_send("ring_send", 4), ring_recv("ring_recv", 4);
  trident::comm::sendrecv(Space(), comm, ring_send, (rank + 1) % p, ring_recv, (rank + p - 1) % p);
  auto request = trident::comm::iallreduce(Space(), comm, six, six_out);
  request.wait();

  const auto& stats = comm.stats();
  CHECK(stats[Operation::allreduce].calls == 3);
  CHECK(stats[Operation::allreduce].bytes == 3 * 6 * f);
  CHECK(stats[Operation::allgather].calls == 2);
  CHECK(stats[Operation::allgather].bytes == 3 * p * f + 2 * p * d);
  CHECK(stats[Operation::allgatherv].calls == 1);
  CHECK(stats[Operation::allgatherv].bytes == p * (p + 1) / 2 * d);
  CHECK(stats[Operation::reduce_scatter].calls == 1);
  CHECK(stats[Operation::reduce_scatter].bytes == 2 * p * f);
  CHECK(stats[Operation::reduce_scatter_v].calls == 1);
  CHECK(stats[Operation::reduce_scatter_v].bytes == p * (p + 1) / 2 * d);
  CHECK(stats[Operation::broadcast].calls == 1);
  CHECK(stats[Operation::broadcast].bytes == 5 * 4);
  CHECK(stats[Operation::alltoall].calls == 1);
  CHECK(stats[Operation::alltoall].bytes == 2 * p * 8);
  CHECK(stats[Operation::barrier].calls == 1);
  CHECK(stats[Operation::barrier].bytes == 0);
  CHECK(stats[Operation::send].calls == 1);
  CHECK(stats[Operation::send].bytes == 4 * f);
  CHECK(stats[Operation::recv].calls == 1);
  CHECK(stats[Operation::recv].bytes == 4 * f);
  CHECK(stats.total_calls() == 13);
  CHECK(stats.total_bytes() == 18 * f + 3 * p * f + 2 * p * d + p * (p + 1) * d + 2 * p * f + 20 + 16 * p + 8 * f);
  CHECK(stats.packed_bytes() == 0);
  // Device memory goes through the host when MPI cannot read it (counted exactly in the next test).
  CHECK((stats.staged_bytes() > 0) == staged_automatically<Memory>());
  CHECK(comm.collective_calls() == 11);

  comm.reset_stats();
  CHECK(stats.total_calls() == 0);
  CHECK(stats.total_bytes() == 0);
  CHECK(stats[Operation::allreduce].bytes == 0);
}

TEST_CASE("packing and staging copies are counted exactly", "[comm][statistics]") {
  auto comm = world().duplicate("copies");
  comm.set_backend(trident::comm::Backend::mpi);  // MPI's staging is what is counted here
  const std::int64_t bytes = 3 * 4 * sizeof(double);
  // Every staged all-reduce copies its bytes to the host and back.
  const std::int64_t automatic = staged_automatically<Memory>() ? 2 * bytes : 0;
  StridedMatrix<double> send("send", 3, 4), recv("recv", 3, 4);
  trident::comm::allreduce(Space(), comm, send.view, recv.view);
  CHECK(comm.stats().packed_bytes() == 2 * bytes);  // pack send, unpack recv
  trident::comm::allreduce(Space(), comm, recv.view);
  CHECK(comm.stats().packed_bytes() == 4 * bytes);  // in place: both ways
  CHECK(comm.stats().staged_bytes() == 2 * automatic);

  comm.set_transport(Transport::host_staged);
  Kokkos::View<double*, Memory> contiguous("contiguous", 12);
  trident::comm::allreduce(Space(), comm, contiguous);
  CHECK(comm.stats().staged_bytes() == 2 * automatic + 2 * bytes);
  CHECK(comm.stats().packed_bytes() == 4 * bytes);
  trident::comm::allreduce(Space(), comm, send.view, recv.view);
  CHECK(comm.stats().staged_bytes() == 2 * automatic + 4 * bytes);
  CHECK(comm.stats().packed_bytes() == 6 * bytes);
}

// Every enabled execution space, its views in its own memory: forced host staging, the direct
// path where MPI can read that memory (host memory, or device memory with a GPU-aware MPI), and
// the automatic choice, which must stage device memory exactly when MPI is not GPU-aware.
TEMPLATE_LIST_TEST_CASE("host staging and the direct path give the same results on every space", "[comm][staging]",
                        trident_test::ExecutionSpaces) {
  using Space = TestType;
  using Memory = typename Space::memory_space;
  constexpr bool host_memory = Kokkos::SpaceAccessibility<Kokkos::HostSpace, Memory>::accessible;
  const bool gpu_aware = trident::comm::mpi_is_gpu_aware();
  std::vector<Transport> transports = {Transport::host_staged, Transport::automatic};
  if (host_memory || gpu_aware) {
    transports.push_back(Transport::direct);
  } else {
    WARN(Space::name() << ": MPI is not GPU-aware here, so the direct path on device memory is not run");
  }
  for (Transport transport : transports) {
    INFO(Space::name() << ", transport " << trident::comm::transport_name(transport));
    auto comm = world().duplicate("staged");
    comm.set_backend(trident::comm::Backend::mpi);  // the transports are MPI's
    comm.set_transport(transport);
    const int size = comm.size(), rank = comm.rank();
    const std::int64_t n = 6;
    const auto sum = expected_reduction(size, n);
    const auto concatenation = expected_concatenation(std::vector<int>(static_cast<std::size_t>(size), n));

    const auto send = filled<float, Memory>("send", n, rank);
    Kokkos::View<float*, Memory> recv("recv", n);
    trident::comm::allreduce(Space(), comm, send, recv);
    CHECK(mismatches(values(recv), sum) == 0);

    StridedMatrix<float, Memory> strided("strided", 2, 3);
    fill(strided.view, [&](std::int64_t i) { return value(rank, i); });
    trident::comm::allreduce(Space(), comm, strided.view);
    CHECK(mismatches(values(strided.view), sum) == 0);
    CHECK(strided.untouched_violations() == 0);

    StridedMatrix<float, Memory> gathered("gathered", 2 * size, 3);
    trident::comm::allgather(Space(), comm, send, gathered.view);
    CHECK(mismatches(values(gathered.view), concatenation) == 0);
    CHECK(gathered.untouched_violations() == 0);

    const auto scatter_send = filled<double, Memory>("scatter_send", size * n, rank);
    Kokkos::View<double*, Memory> scatter_recv("scatter_recv", n);
    auto request = trident::comm::ireduce_scatter(Space(), comm, scatter_send, scatter_recv);
    request.wait();
    CHECK(mismatches(values(scatter_recv), expected_reduction(size, n, ReduceOp::sum, rank * n)) == 0);

    Kokkos::View<float*, Memory> broadcast_view("broadcast_view", n);
    fill(broadcast_view, [&](std::int64_t i) { return rank == 0 ? value(0, i) : sentinel; });
    trident::comm::broadcast(Space(), comm, broadcast_view, 0);
    CHECK(mismatches(values(broadcast_view), own_values(0, n)) == 0);

    Kokkos::View<float*, Memory> ring("ring", n);
    trident::comm::sendrecv(Space(), comm, send, (rank + 1) % size, ring, (rank + size - 1) % size);
    CHECK(mismatches(values(ring), own_values((rank + size - 1) % size, n)) == 0);

    const bool expect_staging =
        transport == Transport::host_staged || (transport == Transport::automatic && !host_memory && !gpu_aware);
    CHECK((comm.stats().staged_bytes() > 0) == expect_staging);
  }
}

TEST_CASE("GPU-awareness: environment override and the host memory rule", "[comm][staging]") {
  using trident::comm::Impl::parse_gpu_aware_override;
  CHECK_FALSE(parse_gpu_aware_override(nullptr).has_value());
  CHECK_FALSE(parse_gpu_aware_override("").has_value());
  CHECK(parse_gpu_aware_override("1").value());
  CHECK_FALSE(parse_gpu_aware_override("0").value());
  CHECK_THROWS_WITH(parse_gpu_aware_override("yes"), "trident::comm: TRIDENT_GPU_AWARE_MPI must be 0 or 1, got 'yes'");

  {
    const ScopedEnvironment gpu_aware("TRIDENT_GPU_AWARE_MPI", "1");
    CHECK(trident::comm::mpi_is_gpu_aware());
    gpu_aware.set("0");
    CHECK_FALSE(trident::comm::mpi_is_gpu_aware());
    gpu_aware.set("");
    CHECK(trident::comm::mpi_is_gpu_aware() == trident::comm::Impl::mpi_reports_gpu_support());
  }

  // Host memory never needs staging unless it is forced.
  using trident::comm::Impl::use_host_staging;
  CHECK_FALSE(use_host_staging<Kokkos::HostSpace>(Transport::automatic));
  CHECK(use_host_staging<Kokkos::HostSpace>(Transport::host_staged));
  CHECK_FALSE(use_host_staging<Kokkos::HostSpace>(Transport::direct));
}

TEST_CASE("host staging buffers are pooled: reused when free, never shared in flight", "[comm][staging]") {
  auto& pool = trident::comm::Impl::StagingPool::instance();
  auto first = pool.acquire(1000), second = pool.acquire(1000);
  CHECK(first.data() != second.data());  // both held: two buffers
  CHECK(first.extent(0) >= 1000);
  const char* freed = first.data();
  first = {};
  CHECK(pool.acquire(600).data() == freed);  // free again once its holder lets go
  CHECK(pool.acquire(1 << 20).extent(0) >= (1u << 20));

  // Staged transfers in flight at once each hold their own buffer, and the values arrive.
  auto comm = world().duplicate("pool");
  comm.set_transport(Transport::host_staged);
  const int size = comm.size(), rank = comm.rank();
  const std::int64_t n = 5;
  auto a = filled<float>("a", n, rank), b = filled<float>("b", n, rank + 1);
  auto request_a = trident::comm::iallreduce(Space(), comm, a);
  auto request_b = trident::comm::iallreduce(Space(), comm, b);
  request_a.wait();
  request_b.wait();
  CHECK(mismatches(values(a), expected_reduction(size, n)) == 0);
  std::vector<double> shifted(static_cast<std::size_t>(n), 0.0);
  for (int r = 0; r < size; ++r) {
    const auto own = own_values(r + 1, n);
    for (std::size_t i = 0; i < shifted.size(); ++i) shifted[i] += own[i];
  }
  CHECK(mismatches(values(b), shifted) == 0);
  const std::size_t kept = pool.buffers_kept();
  for (int repeat = 0; repeat < 4; ++repeat) trident::comm::allreduce(Space(), comm, a);
  CHECK(pool.buffers_kept() == kept);  // sequential transfers reuse, not grow
}

TEST_CASE("an idle barrier holds every rank until the last arrives, and counts as a barrier", "[comm][communicator]") {
  const trident::comm::Communicator comm = world("idle");
  comm.barrier();
  const auto start = std::chrono::steady_clock::now();
  // The last rank arrives 100 ms late; nobody may leave before it.
  if (comm.rank() == comm.size() - 1) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  trident::comm::idle_barrier(comm);
  const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  CHECK(waited >= 0.05);
  CHECK(comm.stats()[Operation::barrier].calls == 2);
  // Its nonblocking form completes once every rank has started it.
  auto request = trident::comm::ibarrier(comm);
  request.wait();
  CHECK_FALSE(request.pending());
  CHECK(comm.stats()[Operation::barrier].calls == 3);
}
