// Checkpoint writes that cannot lie: a write that fails on any rank (a short write, a full
// disk, a failed rename), injected or real, is the same error naming the path on every rank,
// leaves no temporary, and leaves the previous checkpoint readable with its values and
// checksums. Temporaries of killed runs are removed, live writers' are kept.

#include "temporary_directory.hpp"
#include "trident_test.hpp"

#include <trident/comm/agreement.hpp>
#include <trident/comm/communicator.hpp>
#include <trident/comm/file.hpp>
#include <trident/io/atomic_file.hpp>
#include <trident/io/fault_injection.hpp>
#include <trident/io/parallel_safetensors_writer.hpp>
#include <trident/io/safetensors.hpp>

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/mount.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace {

using namespace trident_test;
using trident::io::FaultInjection;
using trident::io::TensorPiece;
using trident::io::TensorSpec;
using trident::io::WriteFault;

trident::comm::Communicator world() {
  return trident::comm::Communicator(MPI_COMM_WORLD, "world");
}

// Whatever a test leaves armed is disarmed when it ends, passed or not.
struct Disarm {
  ~Disarm() { trident::io::set_fault_injection(FaultInjection{}); }
};

// A small checkpoint whose values and metadata depend on its version.
struct Checkpoint {
  int version;
  std::int64_t rows;
  std::vector<float> a;
  std::vector<double> b = std::vector<double>(13);

  explicit Checkpoint(int version_, std::int64_t rows_ = 6)
      : version(version_), rows(rows_), a(static_cast<std::size_t>(rows_ * 5)) {
    for (std::size_t i = 0; i < a.size(); ++i)
      a[i] = static_cast<float>(version) * 100.0f + 0.25f * static_cast<float>(i);
    for (std::size_t i = 0; i < b.size(); ++i) b[i] = -static_cast<double>(version) - 1e-3 * static_cast<double>(i * i);
  }
  trident::io::Metadata metadata() const { return {{"version", std::to_string(version)}}; }
  std::vector<TensorSpec> specs() const {
    return {{"a", trident::io::DType::F32, {rows, 5}}, {"b", trident::io::DType::F64, {13}}};
  }
  std::vector<trident::io::HostTensor> host_tensors() const {
    return {trident::io::host_tensor("a", {rows, 5}, a), trident::io::host_tensor("b", {13}, b)};
  }
  // Runs of 3 elements dealt to the ranks in turn: at up to 4 ranks every rank has bytes.
  std::vector<TensorPiece> pieces() const {
    std::vector<TensorPiece> result;
    auto deal = [&](std::size_t tensor, const auto& values) {
      for (std::size_t first = 0, turn = 0; first < values.size(); first += 3, ++turn)
        if (static_cast<int>(turn % static_cast<std::size_t>(world_size())) == world_rank())
          result.push_back({tensor, first, std::min<std::size_t>(3, values.size() - first), values.data() + first});
    };
    deal(0, a);
    deal(1, b);
    return result;
  }
  void write_parallel(const std::string& path) const {
    trident::io::write_safetensors_parallel(path, specs(), pieces(), metadata(), world());
  }
  // The file at `path` is this version: checksums, values and metadata.
  void check_file(const std::string& path) const {
    const trident::io::SafetensorsFile file(path);
    CHECK(file.verify_checksums() == 2);
    CHECK(file.read<float>("a", {rows, 5}) == a);
    CHECK(file.read<double>("b", {13}) == b);
    CHECK(file.metadata().at("version") == std::to_string(version));
  }
};

// Rank 0's text, on every rank.
std::string text_of_rank_0(const std::string& text) {
  int length = static_cast<int>(text.size());
  MPI_Bcast(&length, 1, MPI_INT, 0, MPI_COMM_WORLD);
  std::string shared = text;
  shared.resize(static_cast<std::size_t>(length));
  MPI_Bcast(shared.data(), length, MPI_CHAR, 0, MPI_COMM_WORLD);
  return shared;
}

// Writes `next` over `path` expecting a failure agreed by every rank; returns its message.
std::string failed_parallel_write(const std::string& path, const Checkpoint& next) {
  std::string message;
  int group = 0;
  try {
    next.write_parallel(path);
  } catch (const trident::comm::AgreedFailure& e) {
    group = e.group_size();
    message = dynamic_cast<const std::exception&>(e).what();
  }
  CHECK(group == world_size());
  CHECK(message == text_of_rank_0(message));
  CHECK_THAT(message, Catch::Contains("'" + path + "' was not written"));
  MPI_Barrier(MPI_COMM_WORLD);  // rank 0 has removed the temporary
  return message;
}

std::string failed_one_rank_write(const std::string& path, const Checkpoint& next) {
  std::string message;
  try {
    trident::io::write_safetensors(path, next.host_tensors(), next.metadata());
  } catch (const trident::Error& e) {
    message = e.what();
  }
  CHECK_THAT(message, Catch::Contains(path));
  return message;
}

// A tmpfs of 64 KiB mounted on `directory` while it lives, where the system lets this process mount one.
class SmallDisk {
 public:
  explicit SmallDisk(std::string directory) : m_directory(std::move(directory)) {
    std::filesystem::create_directory(m_directory);
    m_mounted = ::mount("tmpfs", m_directory.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, "size=64k") == 0;
    m_error = m_mounted ? 0 : errno;
  }
  ~SmallDisk() {
    if (m_mounted) ::umount2(m_directory.c_str(), MNT_DETACH);
  }
  SmallDisk(const SmallDisk&) = delete;
  SmallDisk& operator=(const SmallDisk&) = delete;

  bool mounted() const { return m_mounted; }
  std::string why_not() const { return std::strerror(m_error); }
  std::string file(const std::string& name) const { return m_directory + "/" + name; }

 private:
  std::string m_directory;
  bool m_mounted = false;
  int m_error = 0;
};

// Whether `directory` is a 64 KiB tmpfs, as SmallDisk mounts.
bool is_small_disk(const std::string& directory) {
  struct statfs disk {};
  return ::statfs(directory.c_str(), &disk) == 0 && disk.f_type == TMPFS_MAGIC &&
         static_cast<std::uint64_t>(disk.f_blocks) * static_cast<std::uint64_t>(disk.f_bsize) == 65536;
}

}  // namespace

TEST_CASE("TRIDENT_FAULT_INJECT names a fault, a rank and a write", "[io][faults]") {
  using trident::io::parse_fault_injection;
  CHECK(parse_fault_injection("").fault == WriteFault::none);
  const auto plain = parse_fault_injection("enospc");
  CHECK((plain.fault == WriteFault::enospc && plain.rank == -1 && plain.write == 1));
  const auto ranked = parse_fault_injection("short_write:3");
  CHECK((ranked.fault == WriteFault::short_write && ranked.rank == 3 && ranked.write == 1));
  const auto later = parse_fault_injection("rename:0@2");
  CHECK((later.fault == WriteFault::rename && later.rank == 0 && later.write == 2));
  const auto any_rank_later = parse_fault_injection("enospc@4");
  CHECK((any_rank_later.rank == -1 && any_rank_later.write == 4));
  for (const char* bad : {"full", "enospc:", "enospc:-1", "enospc:x", "enospc@0", "enospc@", "rename:1:2", " enospc",
                          "ENOSPC", "enospc@1@2"})
    CHECK_THROWS_AS(parse_fault_injection(bad), trident::InvalidArgument);

  const Disarm disarm;
  ::setenv("TRIDENT_FAULT_INJECT", "rename:0@3", 1);
  const auto from_environment = trident::io::fault_injection_from_environment();
  ::unsetenv("TRIDENT_FAULT_INJECT");
  CHECK((from_environment.fault == WriteFault::rename && from_environment.write == 3));
  CHECK(trident::io::fault_injection_from_environment().fault == WriteFault::none);
  trident::io::set_fault_injection(from_environment);
  CHECK(trident::io::fault_injection().write == 3);
}

TEST_CASE("a parallel checkpoint write that fails on any rank leaves the previous one and no temporary",
          "[io][faults][parallel]") {
  const Disarm disarm;
  SharedTemporaryDirectory dir;
  const std::string path = dir.file("ckpt.safetensors");
  const Checkpoint previous(1), next(2);
  const int last = world_size() - 1;
  struct Case {
    WriteFault fault;
    int rank;
    const char* words;
  };
  const std::vector<Case> cases{
      {WriteFault::short_write, -1, "' stored "}, {WriteFault::short_write, last, "' stored "},
      {WriteFault::enospc, -1, "write_all of '"}, {WriteFault::enospc, last, "write_all of '"},
      {WriteFault::rename, -1, "renaming '"},     {WriteFault::rename, 0, "renaming '"}};
  for (const Case& c : cases) {
    INFO("fault " << static_cast<int>(c.fault) << " on rank " << c.rank);
    previous.write_parallel(path);
    trident::io::set_fault_injection({c.fault, c.rank, 1});
    const std::string message = failed_parallel_write(path, next);
    CHECK_THAT(message, Catch::Contains(c.words) && Catch::Contains("(injected fault)"));
    if (c.rank > 0) CHECK_THAT(message, Catch::Contains("failed on rank(s) " + std::to_string(c.rank) + " of"));
    CHECK(trident::io::fault_injection().fault == WriteFault::none);  // it fired once
    CHECK(dir.entries() == std::vector<std::string>{"ckpt.safetensors"});
    previous.check_file(path);
  }
  // The next write, with no fault armed, goes through.
  next.write_parallel(path);
  next.check_file(path);
  CHECK(dir.entries() == std::vector<std::string>{"ckpt.safetensors"});
}

TEST_CASE("the fault fires at the chosen write, once, and a rename fault needs the renaming rank",
          "[io][faults][parallel]") {
  const Disarm disarm;
  SharedTemporaryDirectory dir;
  const std::string path = dir.file("ckpt.safetensors");
  trident::io::set_fault_injection({WriteFault::enospc, -1, 2});
  Checkpoint(3).write_parallel(path);
  failed_parallel_write(path, Checkpoint(4));
  Checkpoint(3).check_file(path);
  Checkpoint(5).write_parallel(path);
  Checkpoint(5).check_file(path);
  if (world_size() > 1) {
    trident::io::set_fault_injection({WriteFault::rename, world_size() - 1, 1});
    Checkpoint(6).write_parallel(path);
    Checkpoint(6).check_file(path);
    CHECK(trident::io::fault_injection().fault == WriteFault::none);
  }
  CHECK(dir.entries() == std::vector<std::string>{"ckpt.safetensors"});
}

TEST_CASE("a one-rank checkpoint write that fails leaves the previous one and no temporary", "[io][faults]") {
  const Disarm disarm;
  TemporaryDirectory dir;  // each rank's own
  const std::string path = dir.file("one.safetensors");
  const Checkpoint previous(1), next(2);
  struct Case {
    WriteFault fault;
    int rank;
    const char* words;
  };
  const std::vector<Case> cases{{WriteFault::short_write, -1, "failed: no progress"},
                                {WriteFault::short_write, 0, "failed: no progress"},
                                {WriteFault::enospc, -1, std::strerror(ENOSPC)},
                                {WriteFault::rename, 0, "renaming '"}};
  for (const Case& c : cases) {
    INFO("fault " << static_cast<int>(c.fault) << " on rank " << c.rank);
    trident::io::write_safetensors(path, previous.host_tensors(), previous.metadata());
    trident::io::set_fault_injection({c.fault, c.rank, 1});
    const std::string message = failed_one_rank_write(path, next);
    CHECK_THAT(message, Catch::Contains(c.words) && Catch::Contains("(injected fault)"));
    CHECK(dir.entries() == std::vector<std::string>{"one.safetensors"});
    previous.check_file(path);
  }
  // A one-rank write is rank 0 of its own group: a fault for rank 1 passes it by.
  trident::io::set_fault_injection({WriteFault::enospc, 1, 1});
  trident::io::write_safetensors(path, next.host_tensors(), next.metadata());
  next.check_file(path);
  CHECK(dir.entries() == std::vector<std::string>{"one.safetensors"});
}

TEST_CASE("a real full disk fails a one-rank write and keeps the previous checkpoint", "[io][faults][tmpfs]") {
  TemporaryDirectory dir;  // each rank's own disk
  const SmallDisk disk(dir.file("disk"));
  if (!disk.mounted()) {
    WARN("cannot mount a 64 KiB tmpfs (" << disk.why_not() << "): the real full-disk case is skipped");
    return;
  }
  const std::string path = disk.file("ckpt.safetensors");
  const Checkpoint previous(1), too_big(2, 4000);  // 80 KB of floats on a 64 KiB disk
  trident::io::write_safetensors(path, previous.host_tensors(), previous.metadata());
  CHECK_THAT(failed_one_rank_write(path, too_big), Catch::Contains(std::strerror(ENOSPC)));
  CHECK(sorted_entries(dir.file("disk")) == std::vector<std::string>{"ckpt.safetensors"});
  previous.check_file(path);
  // The space is back: a write that fits goes through.
  trident::io::write_safetensors(path, Checkpoint(3).host_tensors(), Checkpoint(3).metadata());
  Checkpoint(3).check_file(path);
}

TEST_CASE("a real full disk fails a parallel write on every rank and keeps the previous checkpoint",
          "[io][faults][parallel][tmpfs]") {
  SharedTemporaryDirectory dir;
  std::optional<SmallDisk> disk;  // rank 0 mounts it, every rank must see it
  if (world_rank() == 0) disk.emplace(dir.file("disk"));
  MPI_Barrier(MPI_COMM_WORLD);
  if (!all_ranks(is_small_disk(dir.file("disk")))) {
    WARN("no 64 KiB tmpfs that every rank sees"
         << (disk && !disk->mounted() ? " (mount: " + disk->why_not() + ")" : std::string())
         << ": the real full-disk case is skipped");
    return;
  }
  const std::string path = dir.file("disk/ckpt.safetensors");
  const Checkpoint previous(1), too_big(2, 4000);
  previous.write_parallel(path);
  failed_parallel_write(path, too_big);
  CHECK(sorted_entries(dir.file("disk")) == std::vector<std::string>{"ckpt.safetensors"});
  previous.check_file(path);
  Checkpoint(3).write_parallel(path);
  Checkpoint(3).check_file(path);
  MPI_Barrier(MPI_COMM_WORLD);  // every rank is done with the disk before rank 0 unmounts it
}

TEST_CASE("reading a file back finds the bytes the file system lost", "[io][faults][parallel]") {
  SharedTemporaryDirectory dir;
  const std::string path = dir.file("file");
  std::vector<char> mine(8);
  for (std::size_t i = 0; i < mine.size(); ++i) mine[i] = static_cast<char>(1 + world_rank() * 8 + i);
  const auto offset = static_cast<std::uint64_t>(world_rank()) * 8;
  trident::comm::WriteOnlyFile file(world(), path);
  file.set_size(8 * static_cast<std::uint64_t>(world_size()));
  file.write({{offset, 8, mine.data()}});
  file.sync();
  file.verify({{offset, 8, mine.data()}});
  MPI_Barrier(MPI_COMM_WORLD);  // every rank has read its part before rank 0 changes the file
  // Three bytes of the last rank's part become a hole behind the file's back.
  if (world_rank() == 0) {
    const int fd = ::open(path.c_str(), O_WRONLY);
    const char zeros[3] = {};
    CHECK(::pwrite(fd, zeros, 3, static_cast<off_t>(8 * world_size() - 5)) == 3);
    ::close(fd);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  std::string message;
  try {
    file.verify({{offset, 8, mine.data()}});
  } catch (const trident::Error& e) {
    message = e.what();
  }
  if (world_rank() == world_size() - 1)
    CHECK_THAT(message, Catch::Contains("of the 8 bytes written at offset " + std::to_string(offset) +
                                        " only the first 3 read back as written"));
  else
    CHECK(message.empty());
  file.close();
}

TEST_CASE("temporaries of killed runs are removed, those of live writers kept", "[io][faults]") {
  namespace fs = std::filesystem;
  TemporaryDirectory dir;  // each rank's own
  const std::string path = dir.file("ckpt.safetensors");
  write_bytes(path, "the checkpoint");
  const auto before_start = fs::file_time_type::clock::now() - std::chrono::hours(1);
  const std::string dead = "2147483000", self = std::to_string(::getpid()), live = std::to_string(::getppid());
  auto make = [&](const std::string& name, bool old) {
    write_bytes(dir.file(name), "partial");
    if (old) fs::last_write_time(dir.file(name), before_start);
  };
  make("ckpt.safetensors.tmp." + dead + ".0", true);   // a killed run: removed
  make("ckpt.safetensors.tmp." + dead + ".17", true);  // removed
  make("ckpt.safetensors.tmp." + self + ".3", true);   // a killed run that had this pid: removed
  make("ckpt.safetensors.tmp." + live + ".0", true);   // a live process here: kept
  make("ckpt.safetensors.tmp." + dead + ".1", false);  // written since this process started: kept
  for (const std::string& other : std::vector<std::string>{
           "ckpt.safetensors.tmp." + dead, "ckpt.safetensors.tmp.x.1", "ckpt.safetensors.tmp.1.2.bak",
           "ckpt.safetensors.tmp..1", "other.safetensors.tmp." + dead + ".0", "ckpt.tmp." + dead + ".0"})
    make(other, true);  // not a temporary of `path`: kept
  const auto before = dir.entries();
  CHECK(trident::io::remove_stale_temporaries(path) == 3);
  auto expected = before;
  for (const std::string& gone : {"ckpt.safetensors.tmp." + dead + ".0", "ckpt.safetensors.tmp." + dead + ".17",
                                  "ckpt.safetensors.tmp." + self + ".3"})
    expected.erase(std::find(expected.begin(), expected.end(), gone));
  CHECK(dir.entries() == expected);
  CHECK(trident::io::remove_stale_temporaries(path) == 0);
  CHECK(trident::io::remove_stale_temporaries(dir.file("missing/ckpt.safetensors")) == 0);
  CHECK(read_bytes(path) == "the checkpoint");
}
