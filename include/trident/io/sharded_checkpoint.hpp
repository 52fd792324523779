#pragma once
// Loading sharded parameter stores from checkpoints in the one-rank format (the file holds
// every global tensor exactly as a one-rank run would): every rank reads just its blocks from
// the file, so a file saved in one layout loads in any other. Saving is the parallel writer's
// (parallel_safetensors_writer.hpp, shard_pieces.hpp): every rank writes its own blocks.

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

inline std::int64_t columns_of(const std::vector<std::int64_t>& shape) {
  return shape.size() == 2 ? shape[1] : 1;
}

}  // namespace detail

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
