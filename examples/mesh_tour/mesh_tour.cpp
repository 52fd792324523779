// A tour of trident's process mesh: the ranks arranged as dp x tp x pp, then every collective
// run along each axis. Each rank checks every result against what it computes on its own from
// the mesh layout; rank 0 prints what it did and the values it got.
//
//   mpiexec -n 8 build/examples/mesh_tour/mesh_tour [--dp D] [--tp T] [--pp P]
//
// Unset sizes: with no flag, tp 2 when the world size is even, then pp 2 when what is left is
// even, the rest data parallel; with some flags, the first unset of dp, tp, pp takes what is left.

#include <trident/comm/comm.hpp>
#include <trident/mesh/process_mesh.hpp>

#include <mpi.h>
#include <Kokkos_Core.hpp>

#include <algorithm>
#include <iomanip>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace {

using Space = Kokkos::DefaultExecutionSpace;
using Ints = Kokkos::View<int*, Space::memory_space>;
using trident::MeshAxis;
using trident::MeshCoords;

const MeshAxis axes[] = {MeshAxis::tp, MeshAxis::dp, MeshAxis::pp};

struct Sizes {
  int dp = 1, tp = 1, pp = 1;
};

Sizes choose_sizes(int world_size, int argc, char** argv) {
  std::optional<int> given[3];  // dp, tp, pp
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    const int slot = flag == "--dp" ? 0 : flag == "--tp" ? 1 : flag == "--pp" ? 2 : -1;
    if (slot < 0 || i + 1 >= argc) {
      throw trident::InvalidArgument("mesh_tour: usage: mesh_tour [--dp D] [--tp T] [--pp P], got '" + flag + "'");
    }
    given[slot] = std::stoi(argv[++i]);
  }
  if (!given[0] && !given[1] && !given[2]) {
    Sizes sizes;
    sizes.tp = world_size % 2 == 0 ? 2 : 1;
    sizes.pp = (world_size / sizes.tp) % 2 == 0 ? 2 : 1;
    sizes.dp = world_size / (sizes.tp * sizes.pp);
    return sizes;
  }
  int product = 1;
  for (const auto& size : given) product *= size.value_or(1);
  for (auto& size : given) {
    if (!size) {
      size = product > 0 && world_size % product == 0 ? world_size / product : 1;
      break;
    }
  }
  return Sizes{given[0].value_or(1), given[1].value_or(1), given[2].value_or(1)};
}

// World ranks of the group along `axis` through `coords`, in the group's rank order.
std::vector<int> group_through(const trident::MeshLayout& layout, MeshCoords coords, MeshAxis axis) {
  std::vector<int> group;
  for (int i = 0; i < layout.size(axis); ++i) {
    coords[axis] = i;
    group.push_back(layout.rank_of(coords));
  }
  return group;
}

std::string list(const std::vector<int>& values, const char* open = "[", const char* close = "]") {
  std::string text = open;
  for (std::size_t i = 0; i < values.size(); ++i) text += (i ? " " : "") + std::to_string(values[i]);
  return text + close;
}

std::vector<int> host_values(const Ints& view) {
  auto host = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), view);
  return std::vector<int>(host.data(), host.data() + host.size());
}

Ints device_values(const std::string& label, const std::vector<int>& values) {
  Ints view(label, values.size());
  auto host = Kokkos::create_mirror_view(Kokkos::HostSpace(), view);
  for (std::size_t i = 0; i < values.size(); ++i) host(i) = values[i];
  Kokkos::deep_copy(view, host);
  return view;
}

// Runs one collective of each kind on `comm` (the group `members` of world ranks, this rank
// being members[index]), checks each result, and describes them. Returns the number of failures.
int tour_axis(const trident::comm::Communicator& comm, const std::vector<int>& members, int world_rank,
              std::ostringstream& out) {
  const int size = comm.size(), index = comm.rank();
  int failures = 0;
  // One line per collective: a single value for reductions and the like, a list for gathers.
  auto report = [&](const std::string& what, const std::vector<int>& got, const std::vector<int>& expected,
                    bool as_list = false) {
    const bool ok = got == expected;
    failures += ok ? 0 : 1;
    out << "    " << std::left << std::setw(46) << what << " = "
        << (as_list || got.size() != 1 ? list(got) : std::to_string(got[0]))
        << (ok ? "" : "   MISMATCH, expected " + list(expected)) << "\n";
  };
  int sum = 0, max = members[0];
  for (int member : members) {
    sum += member;
    max = std::max(max, member);
  }

  Ints mine = device_values("mine", {world_rank}), result("result", 1);
  trident::comm::allreduce(Space(), comm, mine, result, trident::comm::ReduceOp::sum);
  report("allreduce(sum) of world ranks", host_values(result), {sum});
  trident::comm::allreduce(Space(), comm, mine, result, trident::comm::ReduceOp::max);
  report("allreduce(max) of world ranks", host_values(result), {max});

  Ints gathered("gathered", size);
  trident::comm::allgather(Space(), comm, mine, gathered);
  report("allgather of world ranks", host_values(gathered), members, true);

  // Every rank contributes 10 * world rank + j at position j; group rank i keeps position i.
  std::vector<int> contribution(static_cast<std::size_t>(size));
  for (int j = 0; j < size; ++j) contribution[static_cast<std::size_t>(j)] = 10 * world_rank + j;
  Ints scattered("scattered", 1);
  trident::comm::reduce_scatter(Space(), comm, device_values("contribution", contribution), scattered);
  report("reduce_scatter(sum) of 10*rank + j, my block", host_values(scattered), {10 * sum + size * index});

  Ints root_value = device_values("root_value", {index == 0 ? 1000 + world_rank : -1});
  trident::comm::broadcast(Space(), comm, root_value, 0);
  report("broadcast of 1000 + rank from group rank 0", host_values(root_value), {1000 + members[0]});

  // Block j of 100 * world rank + j goes to group rank j.
  std::vector<int> outgoing(static_cast<std::size_t>(size)), expected_incoming(static_cast<std::size_t>(size));
  for (int j = 0; j < size; ++j) {
    outgoing[static_cast<std::size_t>(j)] = 100 * world_rank + j;
    expected_incoming[static_cast<std::size_t>(j)] = 100 * members[static_cast<std::size_t>(j)] + index;
  }
  Ints incoming("incoming", size);
  trident::comm::alltoall(Space(), comm, device_values("outgoing", outgoing), incoming);
  report("alltoall of 100*rank + j, what I received", host_values(incoming), expected_incoming, true);

  const int next = (index + 1) % size, previous = (index + size - 1) % size;
  Ints from_previous("from_previous", 1);
  trident::comm::sendrecv(Space(), comm, mine, next, from_previous, previous);
  report("sendrecv around the group, from the previous", host_values(from_previous),
         {members[static_cast<std::size_t>(previous)]});
  return failures;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  Kokkos::initialize(argc, argv);
  int status = 0;
  {
    const trident::comm::Communicator world(MPI_COMM_WORLD, "world");
    const int rank = world.rank(), n = world.size();
    try {
      const Sizes sizes = choose_sizes(n, argc, argv);
      const trident::ProcessMesh mesh(world, sizes.dp, sizes.tp, sizes.pp);
      const auto& layout = mesh.layout();
      std::ostringstream out;
      out << "trident mesh tour: " << n << " rank" << (n > 1 ? "s" : "") << " as dp " << sizes.dp << " x tp "
          << sizes.tp << " x pp " << sizes.pp << ", ranks numbered tp fastest, then dp, then pp\n\n";

      for (int pp = 0; pp < sizes.pp; ++pp) {
        out << "  pp stage " << std::left << std::setw(4) << pp;
        for (int tp = 0; tp < sizes.tp; ++tp) out << std::right << std::setw(5) << ("tp" + std::to_string(tp));
        out << "\n";
        for (int dp = 0; dp < sizes.dp; ++dp) {
          out << "    dp " << std::left << std::setw(8) << dp;
          for (int tp = 0; tp < sizes.tp; ++tp) out << std::right << std::setw(5) << layout.rank_of({dp, tp, pp});
          out << "\n";
        }
      }
      out << "\n";
      for (MeshAxis axis : axes) {
        std::map<int, std::vector<int>> groups;  // keyed by the group's first member
        for (int r = 0; r < n; ++r) {
          const auto group = group_through(layout, layout.coords_of(r), axis);
          groups[group[0]] = group;
        }
        out << "  " << trident::mesh_axis_name(axis) << " groups:";
        for (const auto& [first, group] : groups) out << " " << list(group, "{", "}");
        out << "\n";
      }

      out << "\nCollectives on rank 0's groups (every rank checks its own results):\n";
      int failures = 0;
      for (MeshAxis axis : axes) {
        const auto members = group_through(layout, mesh.coords(), axis);
        std::ostringstream axis_out;
        axis_out << "  " << trident::mesh_axis_name(axis) << " group " << list(members, "{", "}") << "\n";
        failures += tour_axis(mesh.axis(axis), members, rank, axis_out);
        out << axis_out.str();
      }

      out << "\nTraffic on rank 0, per axis communicator:\n";
      for (MeshAxis axis : axes) {
        const auto& stats = mesh.axis(axis).stats();
        out << "  " << trident::mesh_axis_name(axis) << ": " << stats.total_calls() << " calls, " << stats.total_bytes()
            << " bytes";
        for (auto op :
             {trident::comm::Operation::allreduce, trident::comm::Operation::allgather,
              trident::comm::Operation::reduce_scatter, trident::comm::Operation::broadcast,
              trident::comm::Operation::alltoall, trident::comm::Operation::send, trident::comm::Operation::recv}) {
          out << (op == trident::comm::Operation::allreduce ? " (" : ", ") << trident::comm::operation_name(op) << " "
              << stats[op].bytes;
        }
        out << ")\n";
      }

      int failed_ranks = failures > 0 ? 1 : 0;
      MPI_Allreduce(MPI_IN_PLACE, &failed_ranks, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
      if (failed_ranks == 0) {
        out << "\nAll " << n << " ranks checked every result: all correct.\n";
      } else {
        out << "\n" << failed_ranks << " rank(s) found a wrong result.\n";
        status = 1;
      }
      if (rank == 0) std::cout << out.str() << std::flush;
    } catch (const std::exception& error) {
      // Sizes are checked identically on every rank, so every rank lands here together.
      if (rank == 0) std::cerr << error.what() << "\n";
      status = 1;
    }
  }
  Kokkos::finalize();
  MPI_Finalize();
  return status;
}
