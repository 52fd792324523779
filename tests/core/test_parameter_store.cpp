// ParameterStore: named slices of one flat allocation, and shards described by blocks.

#include "trident_test.hpp"

#include <trident/core/parameter_store.hpp>

namespace {
using Memory = Kokkos::DefaultExecutionSpace::memory_space;
}

TEST_CASE("named tensors are contiguous slices of one allocation", "[parameters]") {
  trident::ParameterStore<float, Memory> store;
  store.declare("a", {2, 3}, true);
  store.declare("b", {4}, false);
  store.allocate();
  CHECK(store.size() == 10);
  CHECK(store.info("b").offset == 6);
  CHECK(store.info("a").weight_decay);
  CHECK_FALSE(store.info("b").weight_decay);
  CHECK(store.matrix("a").extent(0) == 2);
  CHECK(store.matrix("a").extent(1) == 3);
  CHECK(store.vector("b").data() == store.values().data() + 6);
  CHECK(store.grad_vector("b").data() == store.grads().data() + 6);
  REQUIRE(store.info("a").blocks.size() == 1);
  CHECK(store.info("a").blocks[0].rows == 2);
  CHECK(store.info("a").blocks[0].cols == 3);
  CHECK_THROWS_AS(store.info("c"), trident::InvalidArgument);
  CHECK_THROWS_WITH(store.matrix("b"), Catch::Contains("'b' is not a matrix"));
}

TEST_CASE("shards are declared as blocks of the global tensor, and checked", "[parameters]") {
  trident::ParameterStore<double, Memory> store;
  // Rank 1 of 2 of a head-split c_attn [4, 12]: its Q, K and V column blocks of width 2.
  std::vector<trident::ShardBlock> qkv;
  for (int part = 0; part < 3; ++part) qkv.push_back({0, 2 * part, 0, 4 * part + 2, 4, 2});
  store.declare("c_attn", {4, 12}, {4, 6}, qkv, true, false);
  // A row shard of [6, 4]: rows [3, 6).
  store.declare("c_proj", {6, 4}, {3, 4}, {{0, 0, 3, 0, 3, 4}}, true, false);
  CHECK_THROWS_WITH(store.declare("bad", {6, 4}, {3, 4}, {{0, 0, 4, 0, 3, 4}}, true, false),
                    Catch::Contains("outside its local or global shape"));
  CHECK_THROWS_WITH(store.declare("short", {6, 4}, {3, 4}, {{0, 0, 0, 0, 2, 4}}, true, false),
                    Catch::Contains("cover 8 of its 12 local elements"));
  CHECK_THROWS_WITH(store.declare("c_proj", {6}, false), Catch::Contains("declared twice"));
  store.allocate();
  CHECK(store.size() == 24 + 12);
  CHECK_FALSE(store.info("c_attn").replicated);
  CHECK_THROWS_WITH(store.declare("late", {2}, false), Catch::Contains("after allocate()"));
}
