#pragma once
// One file written by every rank of a communicator at once (MPI-IO): each rank hands over the
// byte ranges it owns, where they lie in its memory, and one collective write per round puts
// them in place, so nothing is gathered on one rank or packed into a buffer first. The MPI
// library may aggregate the ranks' pieces into large writes (collective buffering), which is
// what parallel file systems want.
//
// Every call here except remove() is collective over the communicator. MPI reports file
// errors by return code (the default error handler of files); they become trident::Error
// naming the operation and the file. A write that returns success but stored fewer bytes than
// asked is an error too: every round's count is checked, and verify() reads the bytes back,
// because Open MPI's collective writes (OMPIO) report a write on a full disk as complete, with
// the full count.

#include <trident/comm/communicator.hpp>
#include <trident/comm/watchdog.hpp>
#include <trident/core/error.hpp>

#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstring>
#include <exception>
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
  // Creates `path`, which must not exist yet. It is read only by verify().
  WriteOnlyFile(const Communicator& comm, std::string path) : m_comm(comm), m_path(std::move(path)) {
    const Impl::WaitGuard guard(label("trident::comm::WriteOnlyFile::open"));
    check(MPI_File_open(m_comm.mpi(), m_path.c_str(), MPI_MODE_RDWR | MPI_MODE_CREATE | MPI_MODE_EXCL, MPI_INFO_NULL,
                        &m_file),
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
    // A rank whose round failed joins the later ones writing nothing, so no peer waits in a
    // collective it skipped; its first failure is thrown after the last round.
    std::exception_ptr failure;
    for (const auto& round : rounds) {
      try {
        write_round(failure ? std::vector<FileRange>() : round);
      } catch (...) {
        if (!failure) failure = std::current_exception();
      }
    }
    if (failure) std::rethrow_exception(failure);
  }

  // Flushes every rank's writes to the storage device.
  void sync() {
    const Impl::WaitGuard guard(label("trident::comm::WriteOnlyFile::sync"));
    check(MPI_File_sync(m_file), "sync");
  }

  // Reads this rank's `ranges`, as given to write(), back and compares them with their memory:
  // bytes a full disk never took read back as a hole or not at all. Call it after sync().
  void verify(const std::vector<FileRange>& ranges) {
    const Impl::WaitGuard guard(label("trident::comm::WriteOnlyFile::verify"));
    char native[] = "native";
    check(MPI_File_set_view(m_file, 0, MPI_BYTE, MPI_BYTE, native, MPI_INFO_NULL), "verify (set_view)");
    constexpr std::uint64_t chunk = std::uint64_t(1) << 22;
    std::vector<char> buffer;
    for (const auto& range : ranges)
      for (std::uint64_t done = 0; done < range.bytes;) {
        const std::uint64_t n = std::min(range.bytes - done, chunk);
        const std::uint64_t offset = range.offset + done;
        buffer.resize(n);
        MPI_Status status;
        check(MPI_File_read_at(m_file, static_cast<MPI_Offset>(offset), buffer.data(), static_cast<int>(n), MPI_BYTE,
                               &status),
              "verify (read_at)");
        MPI_Count read = 0;
        check(MPI_Get_elements_x(&status, MPI_BYTE, &read), "verify (count)");
        const char* written = static_cast<const char*>(range.data) + done;
        const auto got = std::min(n, static_cast<std::uint64_t>(std::max<MPI_Count>(read, 0)));
        if (got == n && std::memcmp(buffer.data(), written, n) == 0) {
          done += n;
          continue;
        }
        std::uint64_t same = 0;
        while (same < got && buffer[same] == written[same]) ++same;
        throw Error(trident::detail::concat(
            "trident::comm::WriteOnlyFile: reading back '", m_path, "' on rank ", m_comm.rank(), " of communicator '",
            m_comm.name(), "': of the ", n, " bytes written at offset ", offset, " only the first ", same,
            " read back as written; the file system stored less than it reported (a full disk?)"));
      }
  }

  void close() {
    const Impl::WaitGuard guard(label("trident::comm::WriteOnlyFile::close"));
    check(MPI_File_close(&m_file), "close");
  }

  // Not collective: deletes a file (e.g. a temporary another rank created).
  static void remove(const std::string& path) { MPI_File_delete(path.c_str(), MPI_INFO_NULL); }

  // Test seam (trident/io/fault_injection.hpp): the next round in which this rank has bytes
  // fails as on a full disk, storing only part of them while reporting success (short_write),
  // or reporting that there is no space left after the write (no_space).
  enum class Fault { none, short_write, no_space };
  void inject(Fault fault) { m_fault = fault; }

 private:
  // Joins the round's collectives (set_view, write_all) whatever fails on this rank, and throws
  // only after them.
  void write_round(const std::vector<FileRange>& round) {
    const Impl::WaitGuard guard(label("trident::comm::WriteOnlyFile::write"));
    const Fault fault = round.empty() ? Fault::none : std::exchange(m_fault, Fault::none);
    MPI_Datatype filetype = MPI_DATATYPE_NULL, memory = MPI_DATATYPE_NULL;
    MPI_Count expected = 0;
    int typed = MPI_SUCCESS;
    if (!round.empty()) {
      std::vector<int> lengths;
      std::vector<MPI_Aint> offsets, addresses;
      for (const auto& r : round) {
        lengths.push_back(static_cast<int>(r.bytes));
        offsets.push_back(static_cast<MPI_Aint>(r.offset));
        MPI_Aint address = 0;
        MPI_Get_address(r.data, &address);
        addresses.push_back(address);
        expected += static_cast<MPI_Count>(r.bytes);
      }
      if (fault == Fault::short_write) lengths.back() /= 2;  // the rest of the range never reaches the file
      const int n = static_cast<int>(round.size());
      const auto make_type = [&](const std::vector<MPI_Aint>& displacements, MPI_Datatype& type) {
        if (typed != MPI_SUCCESS) return;
        typed = MPI_Type_create_hindexed(n, lengths.data(), displacements.data(), MPI_BYTE, &type);
        if (typed != MPI_SUCCESS)
          type = MPI_DATATYPE_NULL;
        else
          typed = MPI_Type_commit(&type);
      };
      make_type(offsets, filetype);
      make_type(addresses, memory);
    }
    // A rank with nothing in this round keeps the plain byte view and writes nothing.
    const bool writes = !round.empty() && typed == MPI_SUCCESS;
    char native[] = "native";
    const int viewed = MPI_File_set_view(m_file, 0, MPI_BYTE, writes ? filetype : MPI_BYTE, native, MPI_INFO_NULL);
    MPI_Status status;
    int written = writes && viewed == MPI_SUCCESS ? MPI_File_write_all(m_file, MPI_BOTTOM, 1, memory, &status)
                                                  : MPI_File_write_all(m_file, nullptr, 0, MPI_BYTE, &status);
    // The bytes the write stored: the basic elements (bytes) of the memory type it moved.
    MPI_Count stored = 0;
    int counted = MPI_SUCCESS;
    if (writes && viewed == MPI_SUCCESS && written == MPI_SUCCESS)
      counted = MPI_Get_elements_x(&status, memory, &stored);
    if (filetype != MPI_DATATYPE_NULL) MPI_Type_free(&filetype);
    if (memory != MPI_DATATYPE_NULL) MPI_Type_free(&memory);
    const char* injected = fault == Fault::none ? "" : " (injected fault)";
    check(typed, "write (data types)");
    check(viewed, "set_view");
    if (written == MPI_SUCCESS && fault == Fault::no_space) written = MPI_ERR_NO_SPACE;
    check(written, "write_all", injected);
    check(counted, "write_all (count)");
    if (stored != expected)
      throw Error(trident::detail::concat(
          "trident::comm::WriteOnlyFile: write_all of '", m_path, "' on rank ", m_comm.rank(), " of communicator '",
          m_comm.name(), "' stored ",
          stored == MPI_UNDEFINED ? std::string("an unknown number of") : std::to_string(stored), " of ", expected,
          " bytes", injected));
  }

  void check(int result, const char* what, const char* note = "") const {
    if (result == MPI_SUCCESS) return;
    char text[MPI_MAX_ERROR_STRING] = {};
    int length = 0;
    MPI_Error_string(result, text, &length);
    throw Error(trident::detail::concat("trident::comm::WriteOnlyFile: ", what, " of '", m_path, "' on rank ",
                                        m_comm.rank(), " of communicator '", m_comm.name(),
                                        "' failed: ", std::string(text, static_cast<std::size_t>(length)), note));
  }

  Impl::WaitLabel label(const char* operation) const {
    return Impl::WaitLabel{operation, m_comm.name(), m_comm.collective_calls(), -1, -1, m_comm.rank()};
  }

  Communicator m_comm;
  std::string m_path;
  MPI_File m_file = MPI_FILE_NULL;
  Fault m_fault = Fault::none;
};

}  // namespace trident::comm
