#pragma once
// Which pieces of the global tensors a part of a sharded buffer holds, for the parallel
// writer: elements [begin, end) of a buffer laid out like a ParameterStore (its values, or an
// optimizer moment) map, through each tensor's shard blocks, to runs of the row-major global
// tensors. A ZeRO rank owns such a range of its tensor-parallel shard; the ranges of a
// data-parallel group and the shards of a tensor-parallel group together tile every tensor.

#include <trident/core/parameter_store.hpp>
#include <trident/io/parallel_safetensors_writer.hpp>

#include <algorithm>
#include <cstdint>
#include <vector>

namespace trident::io {

// Appends the pieces of `values` (elements [begin, end) of a buffer laid out like `store`,
// values[0] being element begin) to `pieces`. `file_index(info)` gives a tensor's number in
// the file, or a negative number for a tensor this rank does not write (a copy another rank
// writes).
template <class Scalar, class MemorySpace, class FileIndex>
void append_shard_pieces(std::vector<TensorPiece>& pieces, const ParameterStore<Scalar, MemorySpace>& store,
                         std::int64_t begin, std::int64_t end, const Scalar* values, FileIndex&& file_index) {
  for (const auto& t : store.tensors()) {
    if (t.offset + t.size() <= begin || t.offset >= end) continue;
    const long index = file_index(t);
    if (index < 0) continue;
    const bool matrix = t.local_shape.size() == 2;
    const std::int64_t local_cols = matrix ? t.local_shape[1] : 1, global_cols = matrix ? t.global_shape[1] : 1;
    // A run of `count` local elements from `local` (counted from the tensor's start) that are
    // global elements from `global`, clipped to [begin, end) and merged with the previous run
    // when both continue it.
    auto add = [&](std::int64_t local, std::int64_t global, std::int64_t count) {
      const std::int64_t lo = std::max(begin, t.offset + local), hi = std::min(end, t.offset + local + count);
      if (lo >= hi) return;
      const auto first = static_cast<std::uint64_t>(global + (lo - t.offset - local));
      const Scalar* data = values + (lo - begin);
      if (!pieces.empty()) {
        TensorPiece& last = pieces.back();
        if (last.tensor == static_cast<std::size_t>(index) && last.first + last.count == first &&
            static_cast<const Scalar*>(last.data) + last.count == data) {
          last.count += static_cast<std::uint64_t>(hi - lo);
          return;
        }
      }
      pieces.push_back({static_cast<std::size_t>(index), first, static_cast<std::uint64_t>(hi - lo), data});
    };
    for (const auto& b : t.blocks) {
      if (!matrix) {
        add(b.local_row, b.global_row, b.rows);
        continue;
      }
      for (std::int64_t i = 0; i < b.rows; ++i)
        add((b.local_row + i) * local_cols + b.local_col, (b.global_row + i) * global_cols + b.global_col, b.cols);
    }
  }
}

}  // namespace trident::io
