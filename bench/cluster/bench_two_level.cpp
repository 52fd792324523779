// The two-level all-reduce against the flat one on a group spread over nodes, side by side in
// one run, beside what the alpha-beta model (comm/link_cost.hpp) predicts from the links
// measured in the same run. bench/cluster/run.sh runs it on emulated hosts whose links are
// limited (1 Gbit/s), with Open MPI's ring all-reduce chosen so that the flat collective is the
// ring the model describes.
//
// Lines:
//   {"bench":"link","link":"intra"|"inter","latency_us","GBps"}     the calibration
//   {"bench":"two_level_allreduce","mode":"blocking"|"nonblocking","flat","nodes","ranks_per_node","bytes",
//    "flat_s","two_level_s","measured_ratio","predicted_flat_s","predicted_two_level_s",
//    "predicted_ratio","ratio_error"}
// ratio = flat / two-level time; ratio_error = measured_ratio / predicted_ratio - 1. "flat"
// names how the launcher set MPI's flat all-reduce (--flat NAME): "ring" when run.sh chose Open
// MPI's ring, the algorithm the model describes, "default" for Open MPI's own choice. The model
// describes the blocking calls; the nonblocking ones (what the data-parallel buckets post) are
// measured beside them, without a prediction: Open MPI's nonblocking collectives choose their
// own algorithms.
//
// Calibration, in the conditions of the all-reduce:
//   inter: ping-pong between rank 0 of node 0 and of node 1, alone on the link: latency is half
//          the round trip of 8 bytes, bandwidth the slope of the half round trips of 2 to 16 MiB
//          (a token-bucket link lets its first burst through at full speed, which only large
//          messages amortise);
//   intra: a step of the node's ring, from the reduce-scatters and all-gathers of 2 to 16 MiB
//          run inside every node at once (ranks that share cores with the others, and the
//          kernel's network work, are slower than two ranks alone).
// Times are medians over --reps repetitions; a collective's time is the slowest rank's.

#include <trident/comm/comm.hpp>
#include <trident/comm/hierarchical_allreduce.hpp>
#include <trident/comm/link_cost.hpp>

#include "../common/json_line.hpp"
#include "../common/median.hpp"

#include <mpi.h>
#include <Kokkos_Core.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

using Space = Kokkos::DefaultExecutionSpace;
using Vector = Kokkos::View<float*, Space::memory_space>;

// Half the round trip of `bytes` between ranks 0 and 1 of `pair` (other ranks do nothing).
double half_round_trip(const trident::comm::Communicator& pair, std::int64_t bytes, int reps) {
  Vector message("message", static_cast<std::size_t>(bytes / 4 > 0 ? bytes / 4 : 1));
  std::vector<double> times;
  for (int rep = 0; rep < reps + 1; ++rep) {  // the first is a warm-up
    pair.barrier();
    const double start = MPI_Wtime();
    if (pair.rank() == 0) {
      trident::comm::send(Space(), pair, message, 1);
      trident::comm::recv(Space(), pair, message, 1);
    } else if (pair.rank() == 1) {
      trident::comm::recv(Space(), pair, message, 0);
      trident::comm::send(Space(), pair, message, 0);
    }
    if (rep > 0) times.push_back((MPI_Wtime() - start) / 2);
  }
  return trident_bench::median(times);
}

// The link between ranks 0 and 1 of `pair`, measured on rank 0 of `pair` and given to all of
// `world` from world rank `owner`.
trident::comm::LinkCost measure_link(const trident::comm::Communicator& world, const trident::comm::Communicator* pair,
                                     int owner, int reps) {
  double fitted[2] = {0, 0};
  if (pair != nullptr) {
    const double latency = half_round_trip(*pair, 8, reps);
    std::vector<double> sizes, times;
    for (std::int64_t bytes = std::int64_t{2} << 20; bytes <= std::int64_t{16} << 20; bytes *= 2) {
      sizes.push_back(static_cast<double>(bytes));
      times.push_back(half_round_trip(*pair, bytes, reps));
    }
    fitted[0] = latency;
    fitted[1] = trident::comm::fit_link_cost(sizes, times).bytes_per_s;
  }
  MPI_Bcast(fitted, 2, MPI_DOUBLE, owner, world.mpi());
  return trident::comm::LinkCost{fitted[0], fitted[1]};
}

// The slowest rank's time of one call of `run`, median over repetitions.
template <class Run>
double collective_seconds(const trident::comm::Communicator& world, int reps, Run&& run) {
  std::vector<double> times;
  for (int rep = 0; rep < reps + 1; ++rep) {
    world.barrier();
    const double start = MPI_Wtime();
    run();
    double elapsed = MPI_Wtime() - start;
    MPI_Allreduce(MPI_IN_PLACE, &elapsed, 1, MPI_DOUBLE, MPI_MAX, world.mpi());
    if (rep > 0) times.push_back(elapsed);
  }
  return trident_bench::median(times);
}

// A step of a ring inside each node: (bytes / k, seconds / (k - 1)) of reduce-scatters and
// all-gathers over the node's k ranks, every node at once, fitted to a line.
trident::comm::LinkCost measure_node_ring(const trident::comm::Communicator& world,
                                          const trident::comm::NodeGroups& groups, int reps) {
  const int k = groups.ranks_per_node();
  std::vector<double> step_bytes, step_seconds;
  for (std::int64_t bytes = std::int64_t{2} << 20; bytes <= std::int64_t{16} << 20; bytes *= 2) {
    const auto elements = static_cast<std::size_t>(bytes / 4);
    Vector full("full", elements), part("part", elements / static_cast<std::size_t>(k));
    const std::vector<int> counts(static_cast<std::size_t>(k), static_cast<int>(elements) / k);
    Vector whole = Kokkos::subview(full, std::make_pair(std::size_t{0}, part.size() * static_cast<std::size_t>(k)));
    const double scatter = collective_seconds(
        world, reps, [&] { trident::comm::reduce_scatter_v(Space(), groups.local(), whole, part, counts); });
    const double gather = collective_seconds(
        world, reps, [&] { trident::comm::allgatherv(Space(), groups.local(), part, whole, counts); });
    for (const double seconds : {scatter, gather}) {
      step_bytes.push_back(static_cast<double>(bytes) / k);
      step_seconds.push_back(seconds / (k - 1));
    }
  }
  return trident::comm::fit_link_cost(step_bytes, step_seconds);
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  Kokkos::initialize(argc, argv);
  int status = 0;
  {
    const trident::comm::Communicator world(MPI_COMM_WORLD, "world");
    int reps = 3;
    std::string flat_name = "mpi";  // how the launcher set MPI's flat all-reduce (run.sh: ring, or default)
    std::vector<std::int64_t> sizes = {std::int64_t{16} << 20, std::int64_t{64} << 20};
    for (int i = 1; i < argc; ++i) {
      const std::string arg = argv[i];
      if (arg == "--reps" && i + 1 < argc) reps = std::atoi(argv[++i]);
      if (arg == "--mib" && i + 1 < argc) sizes = {std::int64_t{std::atoi(argv[++i])} << 20};
      if (arg == "--flat" && i + 1 < argc) flat_name = argv[++i];
    }
    const trident::comm::NodeGroups groups(world);
    if (!groups.worthwhile() || groups.ranks_per_node() < 2) {
      if (world.rank() == 0)
        std::fprintf(stderr, "bench_two_level: needs several nodes with several ranks each; this run has %s\n",
                     groups.describe().c_str());
      status = 2;
    } else {
      // The ranks at local position 0 of nodes 0 and 1.
      const trident::comm::Communicator inter_pair =
          world.split(groups.local().rank() == 0 && groups.topology().node() < 2 ? 0 : MPI_UNDEFINED,
                      groups.topology().node(), "inter");
      trident::comm::NodeLinks links;
      links.intra = measure_node_ring(world, groups, reps);
      links.inter = measure_link(world, inter_pair.valid() ? &inter_pair : nullptr, 0, reps);
      if (world.rank() == 0) {
        for (const auto& [name, link] : {std::make_pair("intra", links.intra), std::make_pair("inter", links.inter)})
          trident_bench::print_json<Space>("{\"bench\":\"link\",\"link\":\"%s\",\"latency_us\":%.2f,\"GBps\":%.4f}\n",
                                           name, link.latency_s * 1e6, link.bytes_per_s / 1e9);
      }
      const int nodes = groups.nodes(), k = groups.ranks_per_node();
      for (const std::int64_t bytes : sizes) {
        Vector flat("flat", static_cast<std::size_t>(bytes / 4)),
            two_level("two_level", static_cast<std::size_t>(bytes / 4));
        Kokkos::deep_copy(flat, 1.0f);
        Kokkos::deep_copy(two_level, 1.0f);
        const double predicted_flat =
            trident::comm::ring_allreduce_seconds(links, nodes, k, static_cast<double>(bytes));
        const double predicted_two_level =
            trident::comm::two_level_allreduce_seconds(links, nodes, k, static_cast<double>(bytes));
        for (const bool blocking : {true, false}) {
          const double flat_s = collective_seconds(world, reps, [&] {
            if (blocking) return trident::comm::allreduce(Space(), world, flat);
            trident::comm::iallreduce(Space(), world, flat).wait();
          });
          const double two_level_s = collective_seconds(world, reps, [&] {
            if (blocking) return trident::comm::allreduce(Space(), groups, two_level);
            trident::comm::iallreduce(Space(), groups, two_level).wait();
          });
          const double measured_ratio = flat_s / two_level_s, predicted_ratio = predicted_flat / predicted_two_level;
          if (world.rank() != 0) continue;
          if (blocking)
            trident_bench::print_json<Space>(
                "{\"bench\":\"two_level_allreduce\",\"mode\":\"blocking\",\"flat\":\"%s\",\"nodes\":%d,\"ranks_per_"
                "node\":%d,"
                "\"bytes\":%lld,\"flat_s\":%.4f,\"two_level_s\":%.4f,\"measured_ratio\":%.3f,\"predicted_flat_s\":%.4f,"
                "\"predicted_two_level_s\":%.4f,\"predicted_ratio\":%.3f,\"ratio_error\":%.3f}\n",
                flat_name.c_str(), nodes, k, static_cast<long long>(bytes), flat_s, two_level_s, measured_ratio,
                predicted_flat, predicted_two_level, predicted_ratio, measured_ratio / predicted_ratio - 1);
          else
            trident_bench::print_json<Space>(
                "{\"bench\":\"two_level_allreduce\",\"mode\":\"nonblocking\",\"flat\":\"%s\",\"nodes\":%d,\"ranks_per_"
                "node\":%d,"
                "\"bytes\":%lld,\"flat_s\":%.4f,\"two_level_s\":%.4f,\"measured_ratio\":%.3f}\n",
                flat_name.c_str(), nodes, k, static_cast<long long>(bytes), flat_s, two_level_s, measured_ratio);
        }
      }
    }
  }
  Kokkos::finalize();
  MPI_Finalize();
  return status;
}
