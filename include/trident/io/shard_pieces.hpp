#pragma once
// Which pieces of the global tensors a part of a sharded buffer holds, for the parallel writer
// and reader: elements [begin, end) of a buffer laid out like a ParameterStore (its values, or
// an optimizer moment) map, through each tensor's shard blocks, to runs of the row-major
// global tensors. A ZeRO rank owns such a range of its tensor-parallel shard; the ranges of a
// data-parallel group and the shards of a tensor-parallel group together tile every tensor.

#include <trident/core/parameter_store.hpp>
#include <trident/io/parallel_safetensors_writer.hpp>
#include <trident/io/safetensors_reader.hpp>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

namespace trident::io {

// Calls run(info, global_first, count, offset) for every run of consecutive elements of
// [begin, end) of a buffer laid out like `store` that are also consecutive in a global tensor:
// `count` elements of tensor `info` from global element `global_first`, at `offset` elements
// from `begin` in the buffer. Runs come tensor by tensor, in the store's order.
template <class Scalar, class MemorySpace, class Run>
void for_each_shard_run(const ParameterStore<Scalar, MemorySpace>& store, std::int64_t begin, std::int64_t end,
                        Run&& run) {
  for (const auto& t : store.tensors()) {
    if (t.offset + t.size() <= begin || t.offset >= end) continue;
    const bool matrix = t.local_shape.size() == 2;
    const std::int64_t local_cols = matrix ? t.local_shape[1] : 1, global_cols = matrix ? t.global_shape[1] : 1;
    // `count` local elements from `local` (counted from the tensor's start) that are global
    // elements from `global`, clipped to [begin, end).
    auto clipped = [&](std::int64_t local, std::int64_t global, std::int64_t count) {
      const std::int64_t lo = std::max(begin, t.offset + local), hi = std::min(end, t.offset + local + count);
      if (lo < hi)
        run(t, static_cast<std::uint64_t>(global + (lo - t.offset - local)), static_cast<std::uint64_t>(hi - lo),
            lo - begin);
    };
    for (const auto& b : t.blocks) {
      if (!matrix) {
        clipped(b.local_row, b.global_row, b.rows);
        continue;
      }
      for (std::int64_t i = 0; i < b.rows; ++i)
        clipped((b.local_row + i) * local_cols + b.local_col, (b.global_row + i) * global_cols + b.global_col, b.cols);
    }
  }
}

// Appends the pieces of `values` (elements [begin, end) of a buffer laid out like `store`,
// values[0] being element begin) to `pieces`, merging runs that continue each other.
// `file_index(info)` gives a tensor's number in the file, or a negative number for a tensor
// this rank does not write (a copy another rank writes).
template <class Scalar, class MemorySpace, class FileIndex>
void append_shard_pieces(std::vector<TensorPiece>& pieces, const ParameterStore<Scalar, MemorySpace>& store,
                         std::int64_t begin, std::int64_t end, const Scalar* values, FileIndex&& file_index) {
  for_each_shard_run(store, begin, end,
                     [&](const ParameterInfo& t, std::uint64_t first, std::uint64_t count, std::int64_t offset) {
                       const long index = file_index(t);
                       if (index < 0) return;
                       const Scalar* data = values + offset;
                       if (!pieces.empty()) {
                         TensorPiece& last = pieces.back();
                         if (last.tensor == static_cast<std::size_t>(index) && last.first + last.count == first &&
                             static_cast<const Scalar*>(last.data) + last.count == data) {
                           last.count += count;
                           return;
                         }
                       }
                       pieces.push_back({static_cast<std::size_t>(index), first, count, data});
                     });
}

// Reads elements [begin, end) of a buffer laid out like `store` from the tensors
// "<prefix><name>" of `file` into `values` (values[0] being element begin): each rank reads
// its own part of a checkpoint in the one-rank format, whatever layout wrote it.
template <class Scalar, class MemorySpace>
void read_shard_pieces(const SafetensorsFile& file, const std::string& prefix,
                       const ParameterStore<Scalar, MemorySpace>& store, std::int64_t begin, std::int64_t end,
                       Scalar* values) {
  for_each_shard_run(store, begin, end,
                     [&](const ParameterInfo& t, std::uint64_t first, std::uint64_t count, std::int64_t offset) {
                       file.read_range(prefix + t.name, t.global_shape, first, count, values + offset);
                     });
}

}  // namespace trident::io
