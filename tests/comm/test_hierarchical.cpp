// Nodes and the two-level all-reduce. On one host the nodes are given (topology_from_nodes), so
// every split of the ranks into nodes is tried; the emulated hosts of tests/cluster run the
// same collective over nodes MPI discovers.

#include "comm_test_helpers.hpp"

#include <trident/comm/hierarchical_allreduce.hpp>
#include <trident/comm/link_cost.hpp>
#include <trident/comm/topology.hpp>

#include <chrono>
#include <string>
#include <vector>

namespace {

using comm_test::Memory;
using comm_test::Space;
using trident::comm::NodeGroups;
using trident::comm::Topology;

// The splits of `size` ranks into nodes tried: all on one node, pairs of neighbours, and pairs
// dealt round-robin (rank r on node r % nodes), as a launcher mapping by node does.
std::vector<std::vector<int>> node_splits(int size) {
  std::vector<std::vector<int>> splits;
  std::vector<int> one(static_cast<std::size_t>(size), 0), neighbours, dealt;
  splits.push_back(one);
  if (size % 2 == 0 && size > 2) {
    for (int r = 0; r < size; ++r) neighbours.push_back(r / 2);
    for (int r = 0; r < size; ++r) dealt.push_back(r % (size / 2));
    splits.push_back(neighbours);
    splits.push_back(dealt);
  }
  if (size >= 2) {
    std::vector<int> each;
    for (int r = 0; r < size; ++r) each.push_back(r);
    splits.push_back(each);
  }
  return splits;
}

std::string text(const std::vector<int>& nodes) {
  std::string result;
  for (int node : nodes) result += std::to_string(node) + " ";
  return result;
}

}  // namespace

TEST_CASE("a topology numbers nodes by their lowest rank and names them", "[comm][topology]") {
  const auto world = comm_test::world();
  const int size = world.size(), rank = world.rank();
  // Rank r on node id 10 * ((size - 1 - r) / 2): ids that run backwards, so numbering must renumber.
  const Topology topology = trident::comm::topology_from_nodes(world, 10 * ((size - 1 - rank) / 2));
  REQUIRE(static_cast<int>(topology.node_of_rank.size()) == size);
  CHECK(topology.node_of(0) == 0);
  for (int r = 1; r < size; ++r) {
    const bool same = (size - 1 - r) / 2 == (size - r) / 2;
    CHECK(topology.node_of(r) == (same ? topology.node_of(r - 1) : topology.node_of(r - 1) + 1));
  }
  CHECK(topology.nodes() == (size + 1) / 2);
  CHECK(topology.uniform() == (size % 2 == 0 || size == 1));
  CHECK(topology.node() == topology.node_of(rank));

  // On one host, MPI reports one node, named as MPI_Get_processor_name names this host.
  const Topology found = trident::comm::discover_topology(world);
  CHECK(found.nodes() == 1);
  char name[MPI_MAX_PROCESSOR_NAME] = {};
  int length = 0;
  MPI_Get_processor_name(name, &length);
  CHECK(found.node_names.at(0) == std::string(name, static_cast<std::size_t>(length)));
  CHECK(found.uniform());

  // A negative id is refused on every rank.
  CHECK_THROWS_WITH(trident::comm::topology_from_nodes(world, rank == size - 1 ? -1 : 0),
                    Catch::Contains("node ids are >= 0, but rank " + std::to_string(size - 1) + " gave -1"));
}

TEST_CASE("the two-level all-reduce equals the flat one for every split into nodes", "[comm][hierarchical]") {
  const auto world = comm_test::world();
  const int size = world.size(), rank = world.rank();
  for (const auto& nodes : node_splits(size)) {
    INFO("nodes of the ranks: " << text(nodes));
    const NodeGroups groups(world, trident::comm::topology_from_nodes(world, nodes[static_cast<std::size_t>(rank)]));
    REQUIRE(groups.uniform());
    CHECK(groups.ranks_per_node() * groups.nodes() == size);
    CHECK(groups.local().size() == groups.ranks_per_node());
    CHECK(groups.cross().size() == groups.nodes());
    CHECK(groups.worthwhile() == (groups.nodes() > 1));
    // Lengths that do not split evenly over the node's ranks, down to fewer elements than ranks.
    for (std::int64_t n : {std::int64_t{1}, std::int64_t{3}, std::int64_t{1000}, std::int64_t{4097}}) {
      INFO("elements: " << n);
      auto view = comm_test::filled<double>("view", n, rank);
      trident::comm::allreduce(Space(), groups, view);
      // Small integers and halves: every order of the sum gives the same bits.
      CHECK(comm_test::values(view) == comm_test::expected_reduction(size, n));
      auto most = comm_test::filled<double>("most", n, rank);
      trident::comm::allreduce(Space(), groups, most, trident::comm::ReduceOp::max);
      CHECK(comm_test::values(most) == comm_test::expected_reduction(size, n, trident::comm::ReduceOp::max));
      // 16-bit gradients: the ring between nodes combines them in float; these sums are exact.
      auto half = comm_test::filled<trident::bfloat16>("half", n, rank);
      trident::comm::allreduce(Space(), groups, half);
      CHECK(comm_test::values(half) == comm_test::expected_reduction(size, n));
    }
    // The traffic goes through the node and cross groups, not the group itself.
    CHECK(world.stats().total_calls() == 0);
  }
}

TEST_CASE("two-level all-reduces in flight together finish in order, by wait_all or by test", "[comm][hierarchical]") {
  const auto world = comm_test::world();
  const int size = world.size(), rank = world.rank();
  const auto nodes = node_splits(size).back();
  const NodeGroups groups(world, trident::comm::topology_from_nodes(world, nodes[static_cast<std::size_t>(rank)]));
  const std::vector<std::int64_t> lengths = {5, 64, 7, 300};
  std::vector<Kokkos::View<double*, Memory>> views;
  std::vector<trident::comm::Request> requests;
  std::int64_t offset = 0;
  for (std::int64_t n : lengths) {
    views.push_back(comm_test::filled<double>("bucket", n, rank, offset));
    requests.push_back(trident::comm::iallreduce(Space(), groups, views.back()));
    offset += n;
  }
  if (size > 1)
    for (auto& request : requests) CHECK(request.pending());
  // Test in order, stopping at the first unfinished one, as the gradient buckets do.
  for (int round = 0; round < 1000; ++round)
    for (auto& request : requests)
      if (!request.test()) break;
  trident::comm::wait_all(requests);
  offset = 0;
  for (std::size_t b = 0; b < lengths.size(); ++b) {
    CHECK_FALSE(requests[b].pending());
    CHECK(comm_test::values(views[b]) ==
          comm_test::expected_reduction(size, lengths[b], trident::comm::ReduceOp::sum, offset));
    offset += lengths[b];
  }
}

TEST_CASE("rings in flight finish when the ranks have run ahead of each other in different rings",
          "[comm][hierarchical]") {
  // Half the ranks drive the first ring alone (test() in order) for a while before wait_all;
  // the others go straight to wait_all. A wait_all that waited on the current stage of every
  // ring at once deadlocked here within a few rounds: a rank ahead in one ring waited for a
  // neighbour that, in its own wait_all, waited for this rank's next stage of another ring.
  const auto world = comm_test::world();
  const int size = world.size(), rank = world.rank();
  const auto nodes = node_splits(size).back();  // one rank per node: the ring is the whole world
  const NodeGroups groups(world, trident::comm::topology_from_nodes(world, nodes[static_cast<std::size_t>(rank)]));
  for (int round = 0; round < 20; ++round) {
    INFO("round " << round);
    std::vector<Kokkos::View<double*, Memory>> views;
    std::vector<trident::comm::Request> requests;
    for (int b = 0; b < 4; ++b) {
      views.push_back(comm_test::filled<double>("bucket", 40, rank, 40 * b));
      requests.push_back(trident::comm::iallreduce(Space(), groups, views.back()));
    }
    if ((rank + round) % 2 == 0) {
      const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(2 + rank % 3);
      while (std::chrono::steady_clock::now() < until)
        for (auto& request : requests)
          if (!request.test()) break;
    }
    trident::comm::wait_all(requests);
    for (int b = 0; b < 4; ++b)
      CHECK(comm_test::values(views[static_cast<std::size_t>(b)]) ==
            comm_test::expected_reduction(size, 40, trident::comm::ReduceOp::sum, 40 * b));
  }
}

TEST_CASE("a request's stages run in turn, and it stays pending until the last", "[comm][request]") {
  const auto world = comm_test::world();
  const int size = world.size(), rank = world.rank();
  Kokkos::View<double*, Memory> view("view", 4);
  Kokkos::deep_copy(view, 1.0 + rank);
  std::vector<int> finished;
  auto request = trident::comm::iallreduce(Space(), world, view).then([&] {
    finished.push_back(1);
    return trident::comm::iallreduce(Space(), world, view, trident::comm::ReduceOp::max).then([&] {
      finished.push_back(2);
      return trident::comm::Request();
    });
  });
  CHECK(request.pending());
  request.wait();
  CHECK_FALSE(request.pending());
  CHECK(finished == std::vector<int>{1, 2});
  // The sum of 1..size on every rank, then its max: the same value.
  CHECK(comm_test::values(view) == std::vector<double>(4, size * (size + 1) / 2.0));
  // A second then() follows the whole chain, however many stages the first one grew.
  std::vector<int> order;
  auto chained = trident::comm::iallreduce(Space(), world, view)
                     .then([&] {
                       order.push_back(1);
                       return trident::comm::iallreduce(Space(), world, view).then([&] {
                         order.push_back(2);
                         return trident::comm::Request();
                       });
                     })
                     .then([&] {
                       order.push_back(3);
                       return trident::comm::Request();
                     });
  chained.wait();
  CHECK(order == std::vector<int>{1, 2, 3});
}

TEST_CASE("nodes of different sizes have no two-level split, and say so on every rank", "[comm][hierarchical]") {
  const auto world = comm_test::world();
  const int size = world.size(), rank = world.rank();
  if (size < 3) return;
  // Node 0 holds ranks 0 and 1, node 1 the rest: uneven whenever size != 4; with 4, three nodes.
  const int node = size == 4 ? std::min(rank, 2) : (rank < 2 ? 0 : 1);
  const NodeGroups groups(world, trident::comm::topology_from_nodes(world, node));
  CHECK_FALSE(groups.uniform());
  CHECK_FALSE(groups.worthwhile());
  Kokkos::View<double*, Memory> view("view", 8);
  CHECK_THROWS_WITH(trident::comm::allreduce(Space(), groups, view),
                    Catch::Contains("same number of ranks on every node") && Catch::Contains("spans"));
}

TEST_CASE("the alpha-beta model: fitted links and the all-reduce predictions", "[comm][model]") {
  using trident::comm::LinkCost;
  // A line through exact points is found again.
  const LinkCost link = trident::comm::fit_link_cost(
      {1e6, 2e6, 4e6, 8e6}, {20e-6 + 1e6 / 125e6, 20e-6 + 2e6 / 125e6, 20e-6 + 4e6 / 125e6, 20e-6 + 8e6 / 125e6});
  CHECK(link.latency_s == Approx(20e-6).epsilon(1e-9));
  CHECK(link.bytes_per_s == Approx(125e6).epsilon(1e-12));
  CHECK_THROWS_WITH(trident::comm::fit_link_cost({1e6}, {1.0}), Catch::Contains("two or more"));
  CHECK_THROWS_WITH(trident::comm::fit_link_cost({1e6, 2e6}, {1.0, 1.0}), Catch::Contains("do not grow"));

  // 2 nodes x 2 ranks over a 125 MB/s link, the node's memory 100x faster: the flat ring sends
  // 6 quarters of the bytes over the link, two levels 2 halves, plus the node's own steps.
  const trident::comm::NodeLinks links{{0, 12.5e9}, {0, 125e6}};
  const double bytes = 16e6;
  CHECK(trident::comm::ring_allreduce_seconds(links, 2, 2, bytes) == Approx(1.5 * bytes / 125e6));
  CHECK(trident::comm::two_level_allreduce_seconds(links, 2, 2, bytes) == Approx(bytes / 125e6 + bytes / 12.5e9));
  // One node: both are rings inside it; one rank per node: two levels are the flat ring.
  CHECK(trident::comm::ring_allreduce_seconds(links, 1, 4, bytes) == Approx(1.5 * bytes / 12.5e9));
  CHECK(trident::comm::two_level_allreduce_seconds(links, 4, 1, bytes) ==
        Approx(trident::comm::ring_allreduce_seconds(links, 4, 1, bytes)));
  // Latency: 2 (p - 1) messages flat, 2 (k - 1) + 2 (n - 1) in two levels.
  const trident::comm::NodeLinks slow_start{{1e-6, 1e12}, {1e-3, 1e12}};
  CHECK(trident::comm::ring_allreduce_seconds(slow_start, 4, 8, 0) == Approx(62 * 1e-3));
  CHECK(trident::comm::two_level_allreduce_seconds(slow_start, 4, 8, 0) == Approx(14 * 1e-6 + 6 * 1e-3));
}
