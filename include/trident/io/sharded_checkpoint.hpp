#pragma once
// Checkpoints of sharded parameter stores, in the one-rank format: the file holds every
// global tensor exactly as a one-rank run would. Saving gathers the shards of a group to its
// first rank, which writes; loading lets every rank read just its blocks from the file, so a
// file saved in one layout loads in any other.

#include <trident/comm/collectives.hpp>
#include <trident/core/error.hpp>
#include <trident/core/parameter_store.hpp>
#include <trident/core/profiling.hpp>
#include <trident/io/checkpoint.hpp>

#include <Kokkos_Core.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace trident::io {

namespace detail {

// Copies the blocks of a local tensor (row-major, local_cols wide) into its place in a global
// one (row-major, global_cols wide), or back.
template <class Scalar>
void scatter_blocks(const std::vector<std::int64_t>& blocks, const Scalar* local, std::int64_t local_cols,
                    Scalar* global, std::int64_t global_cols) {
  for (std::size_t b = 0; b + 6 <= blocks.size(); b += 6) {
    const auto lr = blocks[b], lc = blocks[b + 1], gr = blocks[b + 2], gc = blocks[b + 3];
    const auto rows = blocks[b + 4], cols = blocks[b + 5];
    for (std::int64_t i = 0; i < rows; ++i)
      for (std::int64_t j = 0; j < cols; ++j)
        global[(gr + i) * global_cols + gc + j] = local[(lr + i) * local_cols + lc + j];
  }
}

inline std::int64_t columns_of(const std::vector<std::int64_t>& shape) {
  return shape.size() == 2 ? shape[1] : 1;
}

}  // namespace detail

// The global tensors of `buffers` (laid out like the store) assembled on rank 0 of `group`
// (other ranks get empty vectors). Every rank of the group must call it.
template <class Scalar, class MemorySpace>
std::vector<std::vector<std::vector<Scalar>>> gather_global_tensors(
    const ParameterStore<Scalar, MemorySpace>& store,
    const std::vector<Kokkos::View<Scalar*, Kokkos::LayoutRight, MemorySpace>>& buffers,
    const comm::Communicator& group) {
  ScopedRegion region("trident::io::gather_global_tensors");
  const Kokkos::DefaultHostExecutionSpace host;
  const int size = group.size(), rank = group.rank();
  // Every rank's block lists, as 6 int64 per block, tensor after tensor.
  std::vector<std::int64_t> my_blocks;
  for (const auto& t : store.tensors()) {
    my_blocks.push_back(static_cast<std::int64_t>(t.blocks.size()));
    for (const auto& b : t.blocks)
      my_blocks.insert(my_blocks.end(), {b.local_row, b.local_col, b.global_row, b.global_col, b.rows, b.cols});
  }
  auto gather_counts = [&](int count) {
    Kokkos::View<int*, Kokkos::HostSpace> mine("trident::io::count", 1), all("trident::io::counts", size);
    mine(0) = count;
    comm::allgather(host, group, mine, all);
    return std::vector<int>(all.data(), all.data() + size);
  };
  const auto block_counts = gather_counts(static_cast<int>(my_blocks.size()));
  std::int64_t total_blocks = 0;
  for (int c : block_counts) total_blocks += c;
  Kokkos::View<std::int64_t*, Kokkos::HostSpace, Kokkos::MemoryTraits<Kokkos::Unmanaged>> my_blocks_view(
      my_blocks.data(), my_blocks.size());
  Kokkos::View<std::int64_t*, Kokkos::HostSpace> all_blocks("trident::io::blocks",
                                                            static_cast<std::size_t>(total_blocks));
  comm::allgatherv(host, group, my_blocks_view, all_blocks, block_counts);

  const auto value_counts = gather_counts(static_cast<int>(store.size()));
  std::int64_t total_values = 0;
  for (int c : value_counts) total_values += c;
  std::vector<std::vector<std::vector<Scalar>>> result(buffers.size());
  for (std::size_t k = 0; k < buffers.size(); ++k) {
    auto local = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), buffers[k]);
    Kokkos::View<Scalar*, Kokkos::HostSpace> all("trident::io::values", static_cast<std::size_t>(total_values));
    comm::allgatherv(host, group, local, all, value_counts);
    if (rank != 0) continue;
    auto& tensors = result[k];
    for (const auto& t : store.tensors()) {
      std::int64_t n = 1;
      for (auto e : t.global_shape) n *= e;
      tensors.emplace_back(static_cast<std::size_t>(n), Scalar(0));
    }
    // Walk every rank's values and block lists; the tensor order is the same on every rank.
    std::int64_t value_offset = 0, block_offset = 0;
    for (int r = 0; r < size; ++r) {
      std::int64_t rank_value = value_offset;
      std::int64_t cursor = block_offset;
      for (std::size_t i = 0; i < store.tensors().size(); ++i) {
        const auto& t = store.tensors()[i];
        const auto count = all_blocks(static_cast<std::size_t>(cursor++));
        std::vector<std::int64_t> blocks(all_blocks.data() + cursor, all_blocks.data() + cursor + 6 * count);
        cursor += 6 * count;
        std::int64_t local_cols = 0, local_size = 0;
        for (std::size_t b = 0; b < blocks.size(); b += 6) {
          local_cols = std::max(local_cols, blocks[b + 1] + blocks[b + 5]);
          local_size += blocks[b + 4] * blocks[b + 5];
        }
        // Replicated tensors come from rank 0 alone; every rank holds the same values.
        if (!(t.replicated && r != 0))
          detail::scatter_blocks(blocks, all.data() + rank_value, t.local_shape.size() == 2 ? local_cols : 1,
                                 tensors[i].data(), detail::columns_of(t.global_shape));
        rank_value += local_size;
      }
      value_offset += value_counts[static_cast<std::size_t>(r)];
      block_offset += block_counts[static_cast<std::size_t>(r)];
    }
  }
  return result;
}

// Writes the one-rank checkpoint of a sharded store from rank 0 of `group`; every rank
// returns or throws together.
template <class Scalar, class MemorySpace>
void save_sharded_checkpoint(const std::string& path, const ParameterStore<Scalar, MemorySpace>& store,
                             const std::vector<StateBuffer<Scalar, MemorySpace>>& state, const Metadata& metadata,
                             const comm::Communicator& group) {
  ScopedRegion region("trident::io::save_sharded_checkpoint");
  std::vector<Kokkos::View<Scalar*, Kokkos::LayoutRight, MemorySpace>> buffers{store.values()};
  for (const auto& s : state) buffers.push_back(s.values);
  const auto global = gather_global_tensors(store, buffers, group);
  std::string error;
  if (group.rank() == 0) {
    try {
      std::vector<HostTensor> tensors;
      for (std::size_t k = 0; k < buffers.size(); ++k) {
        const std::string prefix = k == 0 ? "" : state[k - 1].prefix;
        for (std::size_t i = 0; i < store.tensors().size(); ++i)
          tensors.push_back(
              host_tensor(prefix + store.tensors()[i].name, store.tensors()[i].global_shape, global[k][i].data()));
      }
      write_safetensors(path, tensors, metadata);
    } catch (const std::exception& e) {
      error = e.what();
    }
  }
  // The writer's verdict, for every rank.
  Kokkos::View<int*, Kokkos::HostSpace> length("trident::io::error_length", 1);
  length(0) = static_cast<int>(error.size());
  comm::broadcast(Kokkos::DefaultHostExecutionSpace(), group, length, 0);
  if (length(0) == 0) return;
  Kokkos::View<char*, Kokkos::HostSpace> text("trident::io::error", static_cast<std::size_t>(length(0)));
  if (group.rank() == 0) std::copy(error.begin(), error.end(), text.data());
  comm::broadcast(Kokkos::DefaultHostExecutionSpace(), group, text, 0);
  throw Error(std::string(text.data(), text.size()));
}

// Every rank reads the blocks it holds of each tensor (parameters and state buffers) from a
// one-rank checkpoint. Everything is read before anything is copied: a bad file leaves the
// store untouched. Returns the file's metadata.
template <class Scalar, class MemorySpace>
Metadata load_sharded_checkpoint(const std::string& path, const ParameterStore<Scalar, MemorySpace>& store,
                                 const std::vector<StateBuffer<Scalar, MemorySpace>>& state) {
  ScopedRegion region("trident::io::load_sharded_checkpoint");
  SafetensorsFile file(path);
  file.verify_checksums();  // a corrupt file is refused before anything is read
  using Device = Kokkos::View<Scalar*, Kokkos::LayoutRight, MemorySpace>;
  std::vector<std::pair<std::string, Device>> targets{{"", store.values()}};
  for (const auto& buffer : state) targets.emplace_back(buffer.prefix, buffer.values);
  std::vector<Kokkos::View<Scalar*, Kokkos::LayoutRight, Kokkos::HostSpace>> hosts;
  std::vector<Scalar> block_values;
  for (const auto& [prefix, device] : targets) {
    hosts.emplace_back("trident::io::load_sharded_checkpoint::host", device.extent(0));
    for (const auto& t : store.tensors()) {
      const std::int64_t local_cols = detail::columns_of(t.local_shape);
      Scalar* local = hosts.back().data() + t.offset;
      for (const auto& b : t.blocks) {
        block_values.resize(static_cast<std::size_t>(b.rows * b.cols));
        if (t.global_shape.size() == 2) {
          file.read_slice(prefix + t.name, t.global_shape, IndexRange{b.global_row, b.rows},
                          IndexRange{b.global_col, b.cols}, block_values.data());
        } else {
          file.read_slice(prefix + t.name, t.global_shape, IndexRange{b.global_row, b.rows}, block_values.data());
        }
        for (std::int64_t i = 0; i < b.rows; ++i)
          for (std::int64_t j = 0; j < b.cols; ++j)
            local[(b.local_row + i) * local_cols + b.local_col + j] =
                block_values[static_cast<std::size_t>(i * b.cols + j)];
      }
    }
  }
  for (std::size_t i = 0; i < targets.size(); ++i) Kokkos::deep_copy(targets[i].second, hosts[i]);
  return file.metadata();
}

}  // namespace trident::io
