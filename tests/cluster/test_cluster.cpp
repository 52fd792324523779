// Run by check_cluster.sh on emulated hosts (2 hosts x 2 ranks), launched with the ranks in
// host order or dealt round-robin: nodes as MPI discovers them, the mesh's placement judged by
// the ranks' own hostnames, and the two-level all-reduce over real TCP between hosts.

#include "trident_test.hpp"

#include <trident/comm/comm.hpp>
#include <trident/comm/hierarchical_allreduce.hpp>
#include <trident/comm/topology.hpp>
#include <trident/mesh/process_mesh.hpp>

#include <set>
#include <string>
#include <vector>

namespace {

std::string own_hostname() {
  char name[MPI_MAX_PROCESSOR_NAME] = {};
  int length = 0;
  MPI_Get_processor_name(name, &length);
  return std::string(name, static_cast<std::size_t>(length));
}

// The hostnames of a communicator's ranks, gathered by plain MPI (not by what is tested).
std::vector<std::string> hostnames(const trident::comm::Communicator& comm) {
  std::string mine = own_hostname();
  mine.resize(MPI_MAX_PROCESSOR_NAME, '\0');
  std::vector<char> all(static_cast<std::size_t>(comm.size()) * MPI_MAX_PROCESSOR_NAME);
  MPI_Allgather(mine.data(), MPI_MAX_PROCESSOR_NAME, MPI_CHAR, all.data(), MPI_MAX_PROCESSOR_NAME, MPI_CHAR,
                comm.mpi());
  std::vector<std::string> names;
  for (int r = 0; r < comm.size(); ++r)
    names.emplace_back(all.data() + static_cast<std::size_t>(r) * MPI_MAX_PROCESSOR_NAME);
  return names;
}

std::size_t distinct(const std::vector<std::string>& names) {
  return std::set<std::string>(names.begin(), names.end()).size();
}

}  // namespace

TEST_CASE("MPI reports the emulated hosts as nodes, named by their hostnames", "[cluster]") {
  const trident::comm::Communicator world(MPI_COMM_WORLD, "world");
  const auto topology = trident::comm::discover_topology(world);
  const auto names = hostnames(world);
  REQUIRE(distinct(names) == 2);
  CHECK(topology.nodes() == 2);
  CHECK(topology.uniform());
  for (int r = 0; r < world.size(); ++r) CHECK(topology.node_name_of(r) == names[static_cast<std::size_t>(r)]);
}

TEST_CASE("placed by node, every tensor-parallel group is on one host", "[cluster]") {
  const trident::comm::Communicator world(MPI_COMM_WORLD, "world");
  const int n = world.size();
  const auto names = hostnames(world);
  const bool dealt = names[0] != names[1];  // the launcher put neighbouring ranks on different hosts
  for (const int pp : {1, 2}) {
    INFO("dp " << n / (2 * pp) << " x tp 2 x pp " << pp
               << (dealt ? ", ranks dealt round-robin" : ", ranks in host order"));
    const trident::ProcessMesh mesh(world, n / (2 * pp), 2, pp);
    CHECK(distinct(hostnames(mesh.tp())) == 1);
    CHECK(mesh.placement_warning().empty());
    // The data-parallel or pipeline groups are what cross between the hosts.
    CHECK(distinct(hostnames(pp > 1 ? mesh.pp() : mesh.dp())) == 2);

    // In rank order, tp groups cross hosts exactly when the launcher dealt the ranks, and then
    // the mesh warns.
    const trident::ProcessMesh by_rank(world, n / (2 * pp), 2, pp, trident::default_mesh_order,
                                       trident::MeshPlacement::by_rank);
    CHECK(distinct(hostnames(by_rank.tp())) == (dealt ? 2u : 1u));
    CHECK(by_rank.placement_warning().empty() == !dealt);
  }
}

TEST_CASE("the two-level all-reduce over the hosts equals the flat one", "[cluster]") {
  const trident::comm::Communicator world(MPI_COMM_WORLD, "world");
  const int n = world.size(), rank = world.rank();
  const trident::comm::NodeGroups groups(world);
  REQUIRE(groups.worthwhile());
  CHECK(groups.nodes() == 2);
  CHECK(groups.ranks_per_node() == n / 2);
  CHECK(distinct(hostnames(groups.local())) == 1);
  CHECK(distinct(hostnames(groups.cross())) == 2);
  using View = Kokkos::View<double*, Kokkos::DefaultExecutionSpace::memory_space>;
  for (const std::int64_t elements : {std::int64_t{7}, std::int64_t{1} << 20}) {
    View two_level("two_level", elements), flat("flat", elements);
    Kokkos::parallel_for(
        "fill", Kokkos::RangePolicy<Kokkos::DefaultExecutionSpace>(0, elements), KOKKOS_LAMBDA(const std::int64_t i) {
          two_level(i) = static_cast<double>((rank * 7 + i * 3) % 11) - 5.0;
          flat(i) = two_level(i);
        });
    Kokkos::fence();
    auto request = trident::comm::iallreduce(Kokkos::DefaultExecutionSpace(), groups, two_level);
    request.wait();
    trident::comm::allreduce(Kokkos::DefaultExecutionSpace(), world, flat);
    auto a = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), two_level);
    auto b = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), flat);
    std::int64_t differences = 0;
    for (std::int64_t i = 0; i < elements; ++i) differences += a(i) != b(i);  // integers: exact in any order
    CHECK(differences == 0);
  }
}
