// The parallel safetensors writer: ranks that each write scattered pieces of the tensors make
// the file the one-rank writer makes, byte for byte (header, data and checksums); shards of
// a ParameterStore split by blocks and by ZeRO ranges map to the right pieces, written and
// read back; and a bad plan or a failed write is one error on every rank, nothing written.

#include "temporary_directory.hpp"
#include "trident_test.hpp"

#include <trident/comm/agreement.hpp>
#include <trident/comm/communicator.hpp>
#include <trident/core/parameter_store.hpp>
#include <trident/data_parallel/shard_layout.hpp>
#include <trident/io/parallel_safetensors_writer.hpp>
#include <trident/io/safetensors.hpp>
#include <trident/io/shard_pieces.hpp>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

namespace {

using namespace trident_test;
using trident::io::TensorPiece;
using trident::io::TensorSpec;

trident::comm::Communicator world() {
  return trident::comm::Communicator(MPI_COMM_WORLD, "world");
}

// Global tensors of several dtypes and shapes, values that differ everywhere.
struct Globals {
  std::vector<float> a = std::vector<float>(7 * 5);
  std::vector<double> b = std::vector<double>(11);
  std::vector<std::int32_t> c = std::vector<std::int32_t>(3 * 4);
  std::vector<float> empty;
  Globals() {
    for (std::size_t i = 0; i < a.size(); ++i) a[i] = 0.25f * static_cast<float>(i) - 3.0f;
    for (std::size_t i = 0; i < b.size(); ++i) b[i] = 1e-3 * static_cast<double>(i * i) + 0.5;
    for (std::size_t i = 0; i < c.size(); ++i) c[i] = static_cast<std::int32_t>(i * 1000003 % 977) - 400;
  }
  std::vector<TensorSpec> specs() const {
    return {{"a", trident::io::DType::F32, {7, 5}},
            {"b", trident::io::DType::F64, {11}},
            {"c", trident::io::DType::I32, {3, 4}},
            {"empty", trident::io::DType::F32, {0, 4}}};
  }
  std::vector<trident::io::HostTensor> host_tensors() const {
    return {trident::io::host_tensor("a", {7, 5}, a), trident::io::host_tensor("b", {11}, b),
            trident::io::host_tensor("c", {3, 4}, c), trident::io::host_tensor("empty", {0, 4}, empty)};
  }
  // Runs of `chunk` elements dealt to the ranks in turn, starting at rank `start`.
  std::vector<TensorPiece> dealt(int chunk, int start) const {
    std::vector<TensorPiece> pieces;
    const int rank = world_rank(), size = world_size();
    auto deal = [&](std::size_t tensor, const auto& values) {
      for (std::size_t first = 0, turn = 0; first < values.size(); first += chunk, ++turn) {
        if (static_cast<int>((turn + static_cast<std::size_t>(start)) % static_cast<std::size_t>(size)) != rank)
          continue;
        const std::size_t count = std::min<std::size_t>(chunk, values.size() - first);
        pieces.push_back({tensor, first, count, values.data() + first});
      }
    };
    deal(0, a);
    deal(1, b);
    deal(2, c);
    return pieces;
  }
};

const trident::io::Metadata metadata{{"format", "test"}, {"step", "12"}};

// The one-rank file, written by rank 0 alone; every rank gets its bytes.
std::string one_rank_file(const SharedTemporaryDirectory& dir, const Globals& g) {
  if (world_rank() == 0) trident::io::write_safetensors(dir.file("reference.safetensors"), g.host_tensors(), metadata);
  MPI_Barrier(MPI_COMM_WORLD);
  return read_bytes(dir.file("reference.safetensors"));
}

}  // namespace

TEST_CASE("ranks writing scattered pieces make the one-rank file, byte for byte", "[io][parallel]") {
  SharedTemporaryDirectory dir;
  const Globals g;
  const std::string reference = one_rank_file(dir, g);
  for (int chunk : {1, 3, 64}) {
    const std::string path = dir.file("parallel_" + std::to_string(chunk) + ".safetensors");
    const auto layout =
        trident::io::write_safetensors_parallel(path, g.specs(), g.dealt(chunk, chunk % 2), metadata, world());
    CHECK(layout.file_size == reference.size());
    CHECK(read_bytes(path) == reference);
    trident::io::SafetensorsFile file(path);
    CHECK(file.verify_checksums() == 4);
    CHECK(file.metadata().at("trident.checksum.a").rfind("wsum64:", 0) == 0);
  }
  CHECK(sorted_entries(dir.path()).size() == 4);  // no temporaries left
}

TEST_CASE("the word-sum checksum adds up over pieces at any byte offsets", "[io][parallel]") {
  std::string bytes(103, '\0');
  for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>(i * 37 + 11);
  trident::io::WordSumChecksum whole;
  whole.add(0, bytes.data(), bytes.size());
  for (std::size_t cut : {1, 2, 5, 50, 102}) {
    trident::io::WordSumChecksum first, second, total;
    first.add(0, bytes.data(), cut);
    second.add(cut, bytes.data() + cut, bytes.size() - cut);
    total.merge(second.value());
    total.merge(first.value());
    CHECK(total.value() == whole.value());
  }
  // Any one flipped bit changes it.
  for (std::size_t byte = 0; byte < bytes.size(); byte += 7)
    for (int bit = 0; bit < 8; ++bit) {
      std::string flipped = bytes;
      flipped[byte] = static_cast<char>(flipped[byte] ^ (1 << bit));
      trident::io::WordSumChecksum changed;
      changed.add(0, flipped.data(), flipped.size());
      CHECK(changed.value() != whole.value());
    }
}

TEST_CASE("tensor-parallel blocks and ZeRO ranges of a store write their global tensors", "[io][parallel]") {
  // The world as tp x dp: tensor-parallel shards (columns of a matrix split in 3 head-like
  // blocks, rows of a vector, a replicated tensor), each replica's flat buffer split into
  // dp ranges.
  const int size = world_size(), rank = world_rank();
  const int tp = size % 2 == 0 ? 2 : 1, dp = size / tp, t = rank % tp, d = rank / tp;
  const std::int64_t rows = 3, cols = 6 * tp, width = 6, vector = 5 * tp;
  trident::ParameterStore<float, Kokkos::HostSpace> store;
  std::vector<trident::ShardBlock> heads;
  for (std::int64_t part = 0; part < 3; ++part) heads.push_back({0, part * 2, 0, part * 2 * tp + t * 2, rows, 2});
  store.declare("m", {rows, cols}, {rows, width}, heads, true, tp == 1);
  store.declare("v", {vector}, {5}, {trident::ShardBlock{0, 0, t * 5, 0, 5, 1}}, false, tp == 1);
  store.declare("r", {4}, true);
  store.allocate();
  // The global tensors' values, and this rank's shard of them.
  auto global_m = [&](std::int64_t i, std::int64_t j) { return static_cast<float>(100 * i + j); };
  auto global_v = [&](std::int64_t i) { return static_cast<float>(-i) - 0.5f; };
  const auto values = store.values();
  for (const auto& block : store.info("m").blocks)
    for (std::int64_t i = 0; i < block.rows; ++i)
      for (std::int64_t j = 0; j < block.cols; ++j)
        values(store.info("m").offset + (block.local_row + i) * width + block.local_col + j) =
            global_m(block.global_row + i, block.global_col + j);
  for (std::int64_t i = 0; i < 5; ++i) values(store.info("v").offset + i) = global_v(t * 5 + i);
  for (std::int64_t i = 0; i < 4; ++i) values(store.info("r").offset + i) = 7.0f + static_cast<float>(i);

  std::vector<float> m(static_cast<std::size_t>(rows * cols)), v(static_cast<std::size_t>(vector)), r{7, 8, 9, 10};
  for (std::int64_t i = 0; i < rows; ++i)
    for (std::int64_t j = 0; j < cols; ++j) m[static_cast<std::size_t>(i * cols + j)] = global_m(i, j);
  for (std::int64_t i = 0; i < vector; ++i) v[static_cast<std::size_t>(i)] = global_v(i);
  SharedTemporaryDirectory dir;
  if (rank == 0)
    trident::io::write_safetensors(dir.file("one.safetensors"),
                                   {trident::io::host_tensor("m", {rows, cols}, m),
                                    trident::io::host_tensor("r", {4}, r), trident::io::host_tensor("v", {vector}, v)});
  MPI_Barrier(MPI_COMM_WORLD);

  const trident::data_parallel::ShardLayout ranges(store.size(), dp);
  std::vector<TensorPiece> pieces;
  const std::map<std::string, long> index{{"m", 0}, {"r", 1}, {"v", 2}};
  trident::io::append_shard_pieces(
      pieces, store, ranges.begin(d), ranges.end(d), values.data() + ranges.begin(d),
      [&](const trident::ParameterInfo& info) { return t == 0 || !info.replicated ? index.at(info.name) : -1L; });
  const std::vector<TensorSpec> specs{{"m", trident::io::DType::F32, {rows, cols}},
                                      {"r", trident::io::DType::F32, {4}},
                                      {"v", trident::io::DType::F32, {vector}}};
  trident::io::write_safetensors_parallel(dir.file("sharded.safetensors"), specs, pieces, {}, world());
  CHECK(read_bytes(dir.file("sharded.safetensors")) == read_bytes(dir.file("one.safetensors")));
  // Reading it back, every rank gets exactly its own range, replicated tensors included.
  const trident::io::SafetensorsFile file(dir.file("one.safetensors"));
  std::vector<float> read(static_cast<std::size_t>(ranges.size(d)), -1.0f);
  trident::io::read_shard_pieces(file, "", store, ranges.begin(d), ranges.end(d), read.data());
  CHECK(std::equal(read.begin(), read.end(), values.data() + ranges.begin(d)));
}

TEST_CASE("a bad plan or a failed write is one error on every rank, and nothing is written", "[io][parallel]") {
  SharedTemporaryDirectory dir;
  const Globals g;
  const std::string path = dir.file("ckpt.safetensors");
  if (world_rank() == 0) write_bytes(path, "the previous checkpoint");
  MPI_Barrier(MPI_COMM_WORLD);
  auto expect_refused = [&](const std::vector<TensorSpec>& specs, const std::vector<TensorPiece>& pieces,
                            const trident::io::Metadata& meta, const std::string& target, const std::string& words) {
    std::string message;
    try {
      trident::io::write_safetensors_parallel(target, specs, pieces, meta, world());
    } catch (const trident::comm::AgreedFailure& e) {
      CHECK(e.group_size() == world_size());
      message = dynamic_cast<const std::exception&>(e).what();
    }
    CHECK_THAT(message, Catch::Contains(words));
    MPI_Barrier(MPI_COMM_WORLD);
    CHECK(read_bytes(path) == "the previous checkpoint");
    CHECK(sorted_entries(dir.path()) == std::vector<std::string>{"ckpt.safetensors"});
  };
  // A part nobody writes: the last rank drops its pieces.
  auto pieces = g.dealt(2, 0);
  if (world_rank() == world_size() - 1) pieces.clear();
  expect_refused(g.specs(), pieces, metadata, path, "(a part written twice or by no rank)");
  // A part written twice: every rank writes all of tensor b.
  pieces = g.dealt(2, 0);
  pieces.erase(std::remove_if(pieces.begin(), pieces.end(), [](const TensorPiece& p) { return p.tensor == 1; }),
               pieces.end());
  pieces.push_back({1, 0, g.b.size(), g.b.data()});
  if (world_size() > 1) expect_refused(g.specs(), pieces, metadata, path, "tensor 'b' hold");
  // Overlapping pieces on one rank, and a piece past a tensor's end.
  pieces = g.dealt(2, 0);
  if (world_rank() == 0) pieces.push_back(pieces.front());
  expect_refused(g.specs(), pieces, metadata, path, "overlap");
  pieces = g.dealt(2, 0);
  if (world_rank() == 0) pieces.push_back({2, 10, 5, g.c.data()});
  expect_refused(g.specs(), pieces, metadata, path, "but the tensor has 12");
  // Ranks that plan different files.
  auto other = metadata;
  if (world_rank() == world_size() - 1) other["step"] = "13";
  if (world_size() > 1) expect_refused(g.specs(), g.dealt(2, 0), other, path, "plans other tensors or metadata");
  // A directory that does not exist: the open fails on every rank.
  expect_refused(g.specs(), g.dealt(2, 0), metadata, dir.file("missing/ckpt.safetensors"), "open of");
}
