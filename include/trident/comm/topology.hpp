#pragma once
// Which node each rank of a communicator runs on. A node is a shared-memory domain, as MPI
// sees it (MPI_Comm_split_type with MPI_COMM_TYPE_SHARED): ranks on one node talk through
// memory, ranks on different nodes through the network, so placement and collectives follow it.
//   discover_topology(comm)         collective: the nodes MPI reports
//   topology_from_nodes(comm, id)   collective: nodes the caller defines (a rank file, a test)
// Nodes are numbered 0, 1, ... in the order of their lowest rank.

#include <trident/comm/communicator.hpp>
#include <trident/core/error.hpp>

#include <mpi.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

namespace trident {
namespace comm {

struct Topology {
  std::vector<int> node_of_rank;        // for each rank of the communicator, its node
  std::vector<std::string> node_names;  // for each node, the processor name of its lowest rank
  int rank = 0;                         // the calling rank

  int nodes() const { return static_cast<int>(node_names.size()); }
  int node() const { return node_of_rank[static_cast<std::size_t>(rank)]; }
  int node_of(int r) const { return node_of_rank.at(static_cast<std::size_t>(r)); }
  const std::string& node_name_of(int r) const { return node_names.at(static_cast<std::size_t>(node_of(r))); }
  int ranks_on(int node) const { return static_cast<int>(std::count(node_of_rank.begin(), node_of_rank.end(), node)); }
  // Every node holds the same number of ranks.
  bool uniform() const {
    for (int node = 1; node < nodes(); ++node)
      if (ranks_on(node) != ranks_on(0)) return false;
    return true;
  }
};

namespace Impl {

inline std::string processor_name() {
  char name[MPI_MAX_PROCESSOR_NAME] = {};
  int length = 0;
  check_mpi(MPI_Get_processor_name(name, &length), "trident::comm::topology");
  return std::string(name, static_cast<std::size_t>(length));
}

// Every rank's `id` and processor name, numbered into nodes by lowest rank.
inline Topology topology_of_ids(const Communicator& comm, int id) {
  const char* operation = "trident::comm::topology";
  const auto size = static_cast<std::size_t>(comm.size());
  std::vector<int> ids(size);
  check_mpi(MPI_Allgather(&id, 1, MPI_INT, ids.data(), 1, MPI_INT, comm.mpi()), operation);
  std::vector<char> names(size * MPI_MAX_PROCESSOR_NAME);
  std::string mine = processor_name();
  mine.resize(MPI_MAX_PROCESSOR_NAME, '\0');
  check_mpi(MPI_Allgather(mine.data(), MPI_MAX_PROCESSOR_NAME, MPI_CHAR, names.data(), MPI_MAX_PROCESSOR_NAME, MPI_CHAR,
                          comm.mpi()),
            operation);
  for (std::size_t r = 0; r < size; ++r)  // every rank sees every id, so all throw together
    require_argument(ids[r] >= 0, operation, ": node ids are >= 0, but rank ", r, " gave ", ids[r]);
  Topology topology;
  topology.rank = comm.rank();
  std::map<int, int> index_of_id;  // ranks are visited in order, so nodes number by lowest rank
  for (std::size_t r = 0; r < size; ++r) {
    auto found = index_of_id.find(ids[r]);
    if (found == index_of_id.end()) {
      found = index_of_id.emplace(ids[r], static_cast<int>(topology.node_names.size())).first;
      topology.node_names.emplace_back(names.data() + r * MPI_MAX_PROCESSOR_NAME);
    }
    topology.node_of_rank.push_back(found->second);
  }
  return topology;
}

}  // namespace Impl

inline Topology discover_topology(const Communicator& comm) {
  MPI_Comm shared = MPI_COMM_NULL;
  Impl::check_mpi(MPI_Comm_split_type(comm.mpi(), MPI_COMM_TYPE_SHARED, comm.rank(), MPI_INFO_NULL, &shared),
                  "trident::comm::discover_topology");
  // A node is named by the lowest rank on it.
  int lowest = comm.rank();
  const int reduced = MPI_Allreduce(MPI_IN_PLACE, &lowest, 1, MPI_INT, MPI_MIN, shared);
  MPI_Comm_free(&shared);
  Impl::check_mpi(reduced, "trident::comm::discover_topology");
  return Impl::topology_of_ids(comm, lowest);
}

inline Topology topology_from_nodes(const Communicator& comm, int node_id) {
  return Impl::topology_of_ids(comm, node_id);
}

}  // namespace comm
}  // namespace trident
