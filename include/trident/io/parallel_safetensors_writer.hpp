#pragma once
// One safetensors file written by every rank of a communicator, each putting its own pieces
// of the global tensors at their offsets (MPI-IO), so no rank ever holds the whole model. The
// file is the one a one-rank writer makes from the same tensors, byte for byte: same header,
// same data, same per-tensor checksums (whose partial sums the ranks add up, checksum.hpp).
//
// It appears under its name complete or not at all: the bytes go to a temporary name, every
// rank's writes are counted, synced and read back, and rank 0 renames the file only after all
// of them succeeded. A failure on any rank (a bad piece, a full disk, even one that takes less
// than it reports) makes every rank throw the same error naming the path; the temporary is
// removed and a previous file under the name keeps its contents. TRIDENT_FAULT_INJECT makes
// one such write fail on purpose (fault_injection.hpp).

#include <trident/comm/agreement.hpp>
#include <trident/comm/allgather.hpp>
#include <trident/comm/allreduce.hpp>
#include <trident/comm/broadcast.hpp>
#include <trident/comm/communicator.hpp>
#include <trident/comm/file.hpp>
#include <trident/core/error.hpp>
#include <trident/core/profiling.hpp>
#include <trident/io/atomic_file.hpp>
#include <trident/io/checksum.hpp>
#include <trident/io/fault_injection.hpp>
#include <trident/io/header_checksum.hpp>
#include <trident/io/safetensors_layout.hpp>
#include <trident/io/safetensors_writer.hpp>
#include <trident/io/tensor_info.hpp>

#include <Kokkos_Core.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

namespace trident::io {

// Elements [first, first + count) of the row-major global tensor number `tensor` (in the
// list given to the writer), held in host memory in host byte order.
struct TensorPiece {
  std::size_t tensor = 0;
  std::uint64_t first = 0;
  std::uint64_t count = 0;
  const void* data = nullptr;
};

namespace detail {

// What every rank must agree on: the tensors and the metadata, as one number.
inline std::uint64_t plan_fingerprint(const std::vector<TensorSpec>& specs, const Metadata& metadata) {
  std::string text;
  for (const auto& spec : specs)
    text += spec.name + "\n" + std::string(dtype_name(spec.dtype)) + format_shape(spec.shape) + "\n";
  for (const auto& [key, value] : metadata) text += key + '\n' + value + '\n';
  WordSumChecksum sum;
  sum.add(0, text.data(), text.size());
  return sum.value() ^ text.size();
}

// Checks this rank's pieces against the tensors; returns them in file order.
inline std::vector<TensorPiece> checked_pieces(std::vector<TensorPiece> pieces, const std::vector<TensorSpec>& specs,
                                               const char* operation) {
  for (const auto& piece : pieces) {
    require_argument(piece.tensor < specs.size(), operation, ": a piece names tensor number ", piece.tensor,
                     " but the file has ", specs.size());
    const TensorSpec& spec = specs[piece.tensor];
    std::uint64_t elements = 0;
    require_argument(checked_element_count(spec.shape, elements), operation, ": tensor '", spec.name, "' has shape ",
                     format_shape(spec.shape), ", which has a negative extent or too many elements");
    require_argument(piece.first <= elements && piece.count <= elements - piece.first, operation,
                     ": a piece of tensor '", spec.name, "' holds elements [", piece.first, ", ",
                     piece.first + piece.count, ") but the tensor has ", elements);
    require_argument(piece.data != nullptr || piece.count == 0, operation, ": a piece of tensor '", spec.name,
                     "' has no data");
  }
  std::sort(pieces.begin(), pieces.end(), [](const TensorPiece& a, const TensorPiece& b) {
    return a.tensor != b.tensor ? a.tensor < b.tensor : a.first < b.first;
  });
  for (std::size_t i = 1; i < pieces.size(); ++i)
    require_argument(
        pieces[i].tensor != pieces[i - 1].tensor || pieces[i - 1].first + pieces[i - 1].count <= pieces[i].first,
        operation, ": two pieces of tensor '", specs[pieces[i].tensor].name, "' overlap at element ", pieces[i].first);
  return pieces;
}

}  // namespace detail

// Collective over `comm`. Every rank passes the same `specs` and `metadata` (checked) and its
// own pieces; together the pieces must cover every element of every tensor exactly once
// (checked by count). Returns the file's layout.
inline SafetensorsLayout write_safetensors_parallel(const std::string& path, const std::vector<TensorSpec>& specs,
                                                    const std::vector<TensorPiece>& pieces, const Metadata& metadata,
                                                    const comm::Communicator& comm) {
  ScopedRegion region("trident::io::write_safetensors_parallel");
  const char* operation = "trident::io::write_safetensors_parallel";
  const std::string what = std::string(operation) + " '" + path + "'";
  const Kokkos::DefaultHostExecutionSpace host;
  const std::size_t n = specs.size();

  // Every rank's pieces are checked, and the ranks compare plans, before anything is written.
  std::vector<TensorPiece> mine;
  WriteFault fault = WriteFault::none;
  Kokkos::View<std::uint64_t*, Kokkos::HostSpace> sums("trident::io::piece_sums", 2 * n);  // elements, checksums
  comm::agree_on_failure(comm, what, [&] {
    fault = detail::take_write_fault(comm.rank());
    mine = detail::checked_pieces(pieces, specs, operation);
    for (const auto& piece : mine) {
      const std::size_t element = dtype_size(specs[piece.tensor].dtype);
      WordSumChecksum checksum;
      std::uint64_t offset = piece.first * element;
      detail::for_each_little_endian_piece(piece.data, piece.count * element, element,
                                           [&](const void* bytes, std::size_t length) {
                                             checksum.add(offset, bytes, length);
                                             offset += length;
                                           });
      sums(piece.tensor) += piece.count;
      sums(n + piece.tensor) += checksum.value();
    }
  });
  Kokkos::View<std::uint64_t*, Kokkos::HostSpace> fingerprints("trident::io::plans",
                                                               static_cast<std::size_t>(comm.size()));
  Kokkos::View<std::uint64_t*, Kokkos::HostSpace> fingerprint("trident::io::plan", 1);
  fingerprint(0) = detail::plan_fingerprint(specs, metadata);
  comm::allgather(host, comm, fingerprint, fingerprints);
  comm::allreduce(host, comm, sums, comm::ReduceOp::sum);

  // From here on every rank computes the same things from the same numbers.
  SafetensorsLayout layout;
  comm::agree_on_failure(comm, what, [&] {
    for (int r = 1; r < comm.size(); ++r)
      require_argument(fingerprints(r) == fingerprints(0), operation, ": rank ", r, " of communicator '", comm.name(),
                       "' plans other tensors or metadata for '", path, "' than rank 0");
    Metadata with_checksums = metadata;
    for (std::size_t t = 0; t < n; ++t) {
      std::uint64_t elements = 0;
      checked_element_count(specs[t].shape, elements);
      require_argument(sums(t) == elements, operation, ": the ranks' pieces of tensor '", specs[t].name, "' hold ",
                       sums(t), " elements but it has ", elements, " (a part written twice or by no rank)");
      with_checksums[checksum_key_prefix() + specs[t].name] =
          WordSumChecksum::format(WordSumChecksum::algorithm, sums(n + t));
    }
    with_checksums[header_checksum_key()] = header_checksum(specs, with_checksums);
    layout = plan_safetensors(specs, with_checksums);
  });

  // This rank's byte ranges in file order, from the pieces' memory (little-endian copies on a
  // big-endian host); rank 0 also writes the header.
  std::vector<comm::FileRange> ranges;
  std::vector<std::vector<char>> swapped;
  if (comm.rank() == 0) ranges.push_back({0, layout.header.size(), layout.header.data()});
  for (const auto& piece : mine) {
    const std::size_t element = dtype_size(specs[piece.tensor].dtype);
    const std::uint64_t offset = layout.file_offset(layout.tensors[piece.tensor]) + piece.first * element;
    const void* data = piece.data;
    if (!host_is_little_endian()) {
      const auto* p = static_cast<const char*>(piece.data);
      swapped.emplace_back(p, p + piece.count * element);
      swap_element_bytes(swapped.back().data(), element, piece.count);
      data = swapped.back().data();
    }
    if (piece.count > 0) ranges.push_back({offset, piece.count * element, data});
  }

  // Rank 0 names the temporary.
  std::string temporary = comm.rank() == 0 ? temporary_name_for(path) : std::string();
  Kokkos::View<std::int64_t*, Kokkos::HostSpace> length("trident::io::temporary_length", 1);
  length(0) = static_cast<std::int64_t>(temporary.size());
  comm::broadcast(host, comm, length, 0);
  Kokkos::View<char*, Kokkos::HostSpace> name("trident::io::temporary", static_cast<std::size_t>(length(0)));
  if (comm.rank() == 0) temporary.copy(name.data(), temporary.size());
  comm::broadcast(host, comm, name, 0);
  temporary.assign(name.data(), name.size());

  // Each step is agreed before the next begins: rank 0 renames only once every rank's part is
  // written (its byte count checked), synced, read back as written and closed.
  const auto step = [&](auto&& action) {
    comm::agree_on_failure(comm, what, [&] {
      try {
        action();
      } catch (const Error& e) {
        throw Error(trident::detail::concat(operation, ": '", path,
                                            "' was not written (a previous file keeps its contents): ", e.what()));
      }
    });
  };
  std::optional<comm::WriteOnlyFile> file;
  bool created = false;
  try {
    step([&] { file.emplace(comm, temporary); });
    created = true;
    step([&] { file->set_size(layout.file_size); });
    step([&] {
      if (fault == WriteFault::short_write) file->inject(comm::WriteOnlyFile::Fault::short_write);
      if (fault == WriteFault::enospc) file->inject(comm::WriteOnlyFile::Fault::no_space);
      file->write(ranges);
    });
    step([&] { file->sync(); });
    step([&] { file->verify(ranges); });  // an MPI library may report a write on a full disk as complete
    step([&] {
      file->close();
      file.reset();
    });
    step([&] {
      if (comm.rank() != 0) return;
      const bool fail = fault == WriteFault::rename;
      const bool renamed = !fail && std::rename(temporary.c_str(), path.c_str()) == 0;
      const int error = fail ? EIO : errno;  // read before anything else can change it
      require(renamed, "renaming '", temporary, "' to '", path, "' failed: ", std::strerror(error),
              fail ? " (injected fault)" : "");
      sync_directory_of(path);
    });
  } catch (...) {
    file.reset();  // every rank is here together: the collective close is safe
    if (created && comm.rank() == 0) comm::WriteOnlyFile::remove(temporary);
    throw;
  }
  return layout;
}

}  // namespace trident::io
