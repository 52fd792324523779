#pragma once
// One file written by every rank of a communicator at once (MPI-IO): each rank hands over the
// byte ranges it owns, where they lie in its memory, and one collective write per round puts
// them in place, so nothing is gathered on one rank or packed into a buffer first. The MPI library may aggregate the ranks' pieces into large writes
// (collective buffering), which is what parallel file systems want.
//
// Every call here except remove() is collective over the communicator. MPI reports file
// errors by return code (the default error handler of files); they become trident::Error
// naming the operation and the file.

#include <trident/comm/communicator.hpp>
#include <trident/comm/watchdog.hpp>
#include <trident/core/error.hpp>

#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace trident::comm {

// `bytes` bytes of the file starting at `offset`, taken from `data` in this rank's memory.
struct FileRange {
  std::uint64_t offset = 0;
  std::uint64_t bytes = 0;
  const void* data = nullptr;
};

class WriteOnlyFile {
 public:
  // Creates `path`, which must not exist yet.
  WriteOnlyFile(const Communicator& comm, std::string path) : m_comm(comm), m_path(std::move(path)) {
    const Impl::WaitGuard guard(label("trident::comm::WriteOnlyFile::open"));
    check(MPI_File_open(m_comm.mpi(), m_path.c_str(), MPI_MODE_WRONLY | MPI_MODE_CREATE | MPI_MODE_EXCL,
                        MPI_INFO_NULL, &m_file),
          "open");
  }

  WriteOnlyFile(const WriteOnlyFile&) = delete;
  WriteOnlyFile& operator=(const WriteOnlyFile&) = delete;
  ~WriteOnlyFile() {
    if (m_file != MPI_FILE_NULL) MPI_File_close(&m_file);
  }

  const std::string& path() const { return m_path; }

  void set_size(std::uint64_t bytes) {
    const Impl::WaitGuard guard(label("trident::comm::WriteOnlyFile::set_size"));
    check(MPI_File_set_size(m_file, static_cast<MPI_Offset>(bytes)), "set_size");
  }

  // Writes this rank's `ranges` (sorted by offset, not overlapping) straight from their
  // memory: a file view places them, a memory type gathers them, so nothing is packed first.
  // Ranks may pass any ranges, none included.
  void write(const std::vector<FileRange>& ranges) {
    // MPI counts are ints: the ranges go in rounds of at most round_bytes per rank, and every
    // rank joins as many rounds as the rank that needs the most.
    constexpr std::uint64_t round_bytes = std::uint64_t(1) << 30;
    std::vector<std::vector<FileRange>> rounds(1);
    std::uint64_t in_round = 0;
    for (FileRange range : ranges) {
      while (range.bytes > 0) {
        if (in_round == round_bytes) {
          rounds.emplace_back();
          in_round = 0;
        }
        const std::uint64_t n = std::min(range.bytes, round_bytes - in_round);
        rounds.back().push_back({range.offset, n, range.data});
        range.offset += n;
        range.bytes -= n;
        range.data = static_cast<const char*>(range.data) + n;
        in_round += n;
      }
    }
    long long count = static_cast<long long>(rounds.size());
    {
      const Impl::WaitGuard guard(label("trident::comm::WriteOnlyFile::write (agreeing on rounds)"));
      check(MPI_Allreduce(MPI_IN_PLACE, &count, 1, MPI_LONG_LONG, MPI_MAX, m_comm.mpi()), "write (rounds)");
    }
    rounds.resize(static_cast<std::size_t>(count));
    for (const auto& round : rounds) write_round(round);
  }

  // Flushes every rank's writes to the storage device.
  void sync() {
    const Impl::WaitGuard guard(label("trident::comm::WriteOnlyFile::sync"));
    check(MPI_File_sync(m_file), "sync");
  }

  void close() {
    const Impl::WaitGuard guard(label("trident::comm::WriteOnlyFile::close"));
    check(MPI_File_close(&m_file), "close");
  }

  // Not collective: deletes a file (e.g. a temporary another rank created).
  static void remove(const std::string& path) { MPI_File_delete(path.c_str(), MPI_INFO_NULL); }

 private:
  void write_round(const std::vector<FileRange>& round) {
    const Impl::WaitGuard guard(label("trident::comm::WriteOnlyFile::write"));
    MPI_Datatype filetype = MPI_BYTE, memory = MPI_BYTE;
    if (!round.empty()) {
      std::vector<int> lengths;
      std::vector<MPI_Aint> offsets, addresses;
      for (const auto& r : round) {
        lengths.push_back(static_cast<int>(r.bytes));
        offsets.push_back(static_cast<MPI_Aint>(r.offset));
        MPI_Aint address = 0;
        MPI_Get_address(r.data, &address);
        addresses.push_back(address);
      }
      const int n = static_cast<int>(round.size());
      check(MPI_Type_create_hindexed(n, lengths.data(), offsets.data(), MPI_BYTE, &filetype), "write (file type)");
      check(MPI_Type_commit(&filetype), "write (file type)");
      check(MPI_Type_create_hindexed(n, lengths.data(), addresses.data(), MPI_BYTE, &memory), "write (memory type)");
      check(MPI_Type_commit(&memory), "write (memory type)");
    }
    // A rank with nothing in this round keeps the plain byte view and writes nothing.
    char native[] = "native";
    const int viewed = MPI_File_set_view(m_file, 0, MPI_BYTE, filetype, native, MPI_INFO_NULL);
    int written = viewed;
    if (viewed == MPI_SUCCESS) {
      MPI_Status status;
      written = round.empty() ? MPI_File_write_all(m_file, nullptr, 0, MPI_BYTE, &status)
                              : MPI_File_write_all(m_file, MPI_BOTTOM, 1, memory, &status);
    }
    if (filetype != MPI_BYTE) MPI_Type_free(&filetype);
    if (memory != MPI_BYTE) MPI_Type_free(&memory);
    check(viewed, "set_view");
    check(written, "write_all");
  }

  void check(int result, const char* what) const {
    if (result == MPI_SUCCESS) return;
    char text[MPI_MAX_ERROR_STRING] = {};
    int length = 0;
    MPI_Error_string(result, text, &length);
    throw Error(trident::detail::concat("trident::comm::WriteOnlyFile: ", what, " of '", m_path, "' on rank ",
                                        m_comm.rank(), " of communicator '", m_comm.name(), "' failed: ",
                                        std::string(text, static_cast<std::size_t>(length))));
  }

  Impl::WaitLabel label(const char* operation) const {
    return Impl::WaitLabel{operation, m_comm.name(), m_comm.collective_calls(), -1, -1, m_comm.rank()};
  }

  Communicator m_comm;
  std::string m_path;
  MPI_File m_file = MPI_FILE_NULL;
};

}  // namespace trident::comm
