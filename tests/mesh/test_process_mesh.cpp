// ProcessMesh: rank <-> coordinates for every factorisation of the world size and every axis
// order, sub-communicator membership checked by gathering world ranks, and the size errors.

#include "trident_test.hpp"

#include <trident/comm/comm.hpp>
#include <trident/mesh/process_mesh.hpp>

#include <algorithm>
#include <array>
#include <vector>

using trident::MeshAxis;
using trident::MeshCoords;
using trident::MeshOrder;

namespace {

struct Sizes {
  int dp, tp, pp;
};

std::vector<Sizes> factorisations(int n) {
  std::vector<Sizes> result;
  for (int dp = 1; dp <= n; ++dp)
    for (int tp = 1; tp <= n; ++tp)
      if (n % (dp * tp) == 0) result.push_back({dp, tp, n / (dp * tp)});
  return result;
}

std::vector<MeshOrder> all_orders() {
  std::array<MeshAxis, 3> axes = {MeshAxis::dp, MeshAxis::tp, MeshAxis::pp};
  std::vector<MeshOrder> result;
  do {
    result.push_back(axes);
  } while (std::next_permutation(axes.begin(), axes.end()));
  return result;
}

// World ranks of a sub-communicator's members, in its rank order, gathered through trident.
std::vector<int> members(const trident::comm::Communicator& sub) {
  Kokkos::View<int*, Kokkos::HostSpace> mine("mine", 1), all("all", sub.size());
  mine(0) = trident_test::world_rank();
  trident::comm::allgather(Kokkos::DefaultHostExecutionSpace(), sub, mine, all);
  return std::vector<int>(all.data(), all.data() + all.size());
}

// The world ranks that differ from `coords` only along `axis`, by coordinate.
std::vector<int> expected_members(const trident::ProcessMesh& mesh, MeshAxis axis) {
  std::vector<int> result;
  MeshCoords coords = mesh.coords();
  for (int i = 0; i < mesh.size(axis); ++i) {
    coords[axis] = i;
    result.push_back(mesh.rank_of(coords));
  }
  return result;
}

}  // namespace

TEST_CASE("MeshLayout numbers slots tp fastest, then pp, then dp, by default", "[mesh]") {
  const trident::MeshLayout layout(2, 4, 3);
  CHECK(layout.total_size() == 24);
  int mismatches = 0;
  for (int rank = 0; rank < 24; ++rank) {
    const MeshCoords coords = layout.coords_of(rank);
    mismatches += rank != coords.tp + 4 * (coords.pp + 3 * coords.dp);
    mismatches += layout.rank_of(coords) != rank;
  }
  CHECK(mismatches == 0);
  CHECK(layout.coords_of(5) == MeshCoords{0, 1, 1});   // 5 = tp 1 + 4 * pp 1
  CHECK(layout.coords_of(17) == MeshCoords{1, 1, 1});  // 17 = tp 1 + 4 * (pp 1 + 3 * dp 1)

  // Megatron's order: tp fastest, then dp, then pp.
  const trident::MeshLayout megatron(2, 4, 3, trident::megatron_order);
  CHECK(megatron.coords_of(5) == MeshCoords{1, 1, 0});
  CHECK(megatron.coords_of(17) == MeshCoords{0, 1, 2});

  // Orders read as text, fastest first; anything but a permutation of the three is refused.
  CHECK(trident::mesh_order_from_string("tp,pp,dp") == trident::default_mesh_order);
  CHECK(trident::mesh_order_from_string("tp,dp,pp") == trident::megatron_order);
  CHECK(trident::to_string(trident::mesh_order_from_string("dp,tp,pp")) == "dp,tp,pp");
  for (const char* bad : {"", "tp,pp", "tp,pp,pp", "tp,pp,dp,tp", "tp, pp, dp", "tp,pp,ep"})
    CHECK_THROWS_WITH(trident::mesh_order_from_string(bad), Catch::Contains("names tp, pp and dp once each") &&
                                                                Catch::Contains(std::string("'") + bad + "'"));

  // pp fastest, then tp, then dp.
  const trident::MeshLayout custom(2, 4, 3, {MeshAxis::pp, MeshAxis::tp, MeshAxis::dp});
  CHECK(custom.rank_of(MeshCoords{1, 2, 1}) == 1 + 3 * (2 + 4 * 1));
  for (const auto& order : all_orders()) {
    const trident::MeshLayout any(3, 2, 2, order);
    std::vector<int> seen;
    for (int rank = 0; rank < 12; ++rank) seen.push_back(any.rank_of(any.coords_of(rank)));
    CHECK(seen == std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11});
    // The first axis of the order varies fastest.
    MeshCoords one;
    one[order[0]] = 1;
    CHECK(any.rank_of(one) == 1);
  }
}

TEST_CASE("every factorisation and order gives consistent coordinates and sub-communicators", "[mesh][mpi]") {
  const trident::comm::Communicator world(MPI_COMM_WORLD, "world");
  const int rank = world.rank();
  for (const Sizes& sizes : factorisations(world.size())) {
    for (const auto& order : all_orders()) {
      INFO("dp " << sizes.dp << " tp " << sizes.tp << " pp " << sizes.pp << " order " << mesh_axis_name(order[0]) << ","
                 << mesh_axis_name(order[1]) << "," << mesh_axis_name(order[2]));
      const trident::ProcessMesh mesh(world, sizes.dp, sizes.tp, sizes.pp, order);
      CHECK(mesh.dp_size() == sizes.dp);
      CHECK(mesh.tp_size() == sizes.tp);
      CHECK(mesh.pp_size() == sizes.pp);
      CHECK(mesh.rank_of(mesh.coords()) == rank);
      CHECK(mesh.coords_of(rank) == mesh.coords());
      int round_trip_errors = 0;
      for (int r = 0; r < world.size(); ++r) round_trip_errors += mesh.rank_of(mesh.coords_of(r)) != r;
      CHECK(round_trip_errors == 0);
      for (MeshAxis axis : {MeshAxis::dp, MeshAxis::tp, MeshAxis::pp}) {
        const auto& sub = mesh.axis(axis);
        CHECK(sub.label() == mesh_axis_name(axis));
        CHECK(sub.size() == mesh.size(axis));
        CHECK(sub.rank() == mesh.index(axis));
        CHECK(members(sub) == expected_members(mesh, axis));
      }
      CHECK(mesh.tp_rank() == mesh.coords().tp);
      CHECK(mesh.dp_rank() == mesh.coords().dp);
      CHECK(mesh.pp_rank() == mesh.coords().pp);
    }
  }
}

TEST_CASE("by default tensor-parallel groups are neighbouring ranks, then pipelines", "[mesh][mpi]") {
  const trident::comm::Communicator world(MPI_COMM_WORLD);
  const int n = world.size();
  const int tp = n % 2 == 0 ? 2 : 1, pp = n % 4 == 0 ? 2 : 1;
  const trident::ProcessMesh mesh(world, n / (tp * pp), tp, pp);
  const int rank = world.rank();
  CHECK(mesh.coords().tp == rank % tp);
  CHECK(mesh.coords().pp == (rank / tp) % pp);
  CHECK(mesh.coords().dp == rank / (tp * pp));
  CHECK(mesh.topology().nodes() == 1);
  CHECK(mesh.placement_warning().empty());
  std::vector<int> tp_group;
  for (int i = 0; i < tp; ++i) tp_group.push_back(rank - rank % tp + i);
  CHECK(members(mesh.tp()) == tp_group);

  // A collective on one axis stays inside it: the tp sum of world ranks.
  Kokkos::View<int*, Kokkos::HostSpace> value("value", 1);
  value(0) = rank;
  trident::comm::allreduce(Kokkos::DefaultHostExecutionSpace(), mesh.tp(), value);
  int expected = 0;
  for (int member : tp_group) expected += member;
  CHECK(value(0) == expected);
  CHECK(mesh.tp().stats()[trident::comm::Operation::allreduce].bytes == 4);
  CHECK(mesh.dp().stats().total_calls() == 0);
}

TEST_CASE("sizes that do not fit the communicator are refused", "[mesh][errors]") {
  const trident::comm::Communicator world(MPI_COMM_WORLD);
  const int n = world.size();
  const std::string size = std::to_string(n);
  CHECK_THROWS_AS(trident::ProcessMesh(world, 0, n, 1), trident::InvalidArgument);
  CHECK_THROWS_WITH(
      trident::ProcessMesh(world, 1, -1, 1),
      "trident::ProcessMesh: sizes must be at least 1, got dp 1, tp -1, pp 1 for a communicator of size " + size);
  CHECK_THROWS_WITH(trident::ProcessMesh(world, 2, n, 3), "trident::ProcessMesh: dp 2 x tp " + size +
                                                              " x pp 3 = " + std::to_string(6 * n) +
                                                              " does not match the communicator size " + size);
  CHECK_THROWS_WITH(trident::ProcessMesh(world, 1, n, 1, {MeshAxis::tp, MeshAxis::tp, MeshAxis::pp}),
                    "trident::MeshLayout: the order must name dp, tp and pp once each, got (tp, tp, pp)");
  const trident::MeshLayout layout(2, 2, 1);
  CHECK_THROWS_WITH(layout.coords_of(4), "trident::MeshLayout::coords_of: rank 4 is outside a mesh of 4 ranks");
  CHECK_THROWS_WITH(layout.rank_of(MeshCoords{0, 2, 0}),
                    "trident::MeshLayout::rank_of: (dp 0, tp 2, pp 0) is outside a mesh of dp 2 x tp 2 x pp 1");
}

TEST_CASE("placed by node, tensor-parallel groups stay inside a node whatever order the ranks came in", "[mesh][mpi]") {
  const trident::comm::Communicator world(MPI_COMM_WORLD, "world");
  const int n = world.size(), rank = world.rank();
  if (n % 2 != 0 || n < 4) return;
  const int nodes = n / 2;
  // A launcher mapping by node deals ranks round-robin: rank r runs on node r % nodes.
  const auto topology = trident::comm::topology_from_nodes(world, rank % nodes);
  const auto same_node = [&](const trident::comm::Communicator& group) {
    const auto ranks = members(group);
    return std::all_of(ranks.begin(), ranks.end(),
                       [&](int r) { return topology.node_of(r) == topology.node_of(ranks.front()); });
  };
  const trident::ProcessMesh by_node(world, nodes, 2, 1, trident::default_mesh_order, trident::MeshPlacement::by_node,
                                     topology);
  CHECK(same_node(by_node.tp()));
  CHECK_FALSE(by_node.spans_nodes(MeshAxis::tp));
  CHECK(by_node.spans_nodes(MeshAxis::dp));
  CHECK(by_node.placement_warning().empty());
  CHECK(members(by_node.tp()) == std::vector<int>{rank % nodes, rank % nodes + nodes});
  for (int r = 0; r < n; ++r) CHECK(by_node.rank_of(by_node.coords_of(r)) == r);

  // In rank order, the same mesh puts neighbouring ranks, on different nodes, in a tp group.
  const trident::ProcessMesh by_rank(world, nodes, 2, 1, trident::default_mesh_order, trident::MeshPlacement::by_rank,
                                     topology);
  CHECK_FALSE(same_node(by_rank.tp()));
  CHECK(by_rank.spans_nodes(MeshAxis::tp));
  CHECK_THAT(by_rank.placement_warning(),
             Catch::Contains("tensor-parallel groups span nodes (tp 2, " + std::to_string(nodes) + " nodes: "));
  CHECK_THAT(by_rank.describe_nodes(), Catch::StartsWith(std::to_string(nodes) + " nodes: "));

  // An order with dp first puts the replicas inside a node and tp across: also warned about.
  const trident::ProcessMesh dp_first(world, 2, nodes, 1, trident::mesh_order_from_string("dp,tp,pp"),
                                      trident::MeshPlacement::by_node, topology);
  CHECK(same_node(dp_first.dp()));
  CHECK_FALSE(dp_first.placement_warning().empty());
}

TEST_CASE("the nodes are listed by name with their ranks", "[mesh][mpi]") {
  const trident::comm::Communicator world(MPI_COMM_WORLD, "world");
  const int n = world.size();
  const trident::ProcessMesh mesh(world, n, 1, 1);
  char name[MPI_MAX_PROCESSOR_NAME] = {};
  int length = 0;
  MPI_Get_processor_name(name, &length);
  const std::string ranks = n == 1 ? "0" : "0-" + std::to_string(n - 1);
  CHECK(mesh.describe_nodes() == "1 node: " + std::string(name, static_cast<std::size_t>(length)) + " ranks " + ranks);
  // Nodes given as every other rank: runs of ranks listed one by one.
  const auto dealt = trident::comm::topology_from_nodes(world, world.rank() % 2);
  const trident::ProcessMesh split(world, n, 1, 1, trident::default_mesh_order, trident::MeshPlacement::by_node, dealt);
  if (n == 4) CHECK_THAT(split.describe_nodes(), Catch::Contains("ranks 0,2, ") && Catch::EndsWith("ranks 1,3"));
}
