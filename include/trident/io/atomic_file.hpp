#pragma once
// Writes a file so that readers see either the old file or the complete new one, never a
// partial one: the bytes go to a temporary name in the same directory, are flushed to disk,
// and only then renamed over the real name (rename() within one file system is atomic).
// A checkpoint interrupted by a crash or a full disk leaves the previous checkpoint intact.

#include <trident/core/error.hpp>
#include <trident/io/fault_injection.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <system_error>
#include <utility>

namespace trident::io {

// A name beside `path` for the bytes of a file being written: "<path>.tmp.<pid>.<n>". The pid
// and a counter keep concurrent writers (processes or threads) off each other's temporaries.
inline std::string temporary_name_for(const std::string& path) {
  static std::atomic<unsigned> counter{0};
  return path + ".tmp." + std::to_string(static_cast<long>(::getpid())) + "." + std::to_string(counter.fetch_add(1));
}

namespace detail {

// Close enough to when this process started: dynamic initialization runs before main.
inline const std::filesystem::file_time_type process_start = std::filesystem::file_time_type::clock::now();

// The pid in a name temporary_name_for(path) made, or -1 for any other name.
inline long temporary_pid(const std::string& name, const std::string& file_name) {
  const std::string prefix = file_name + ".tmp.";
  if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) return -1;
  const std::string rest = name.substr(prefix.size());
  const auto dot = rest.find('.');
  const auto digits = [](const std::string& s) {
    return !s.empty() && s.size() <= 18 && s.find_first_not_of("0123456789") == std::string::npos;
  };
  if (dot == std::string::npos || !digits(rest.substr(0, dot)) || !digits(rest.substr(dot + 1))) return -1;
  return std::stol(rest.substr(0, dot));
}

inline bool other_live_process(long pid) {
  if (pid == static_cast<long>(::getpid()) || pid <= 0 || pid > static_cast<long>(INT32_MAX)) return false;
  return ::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM;
}

}  // namespace detail

// Removes the temporaries "<path>.tmp.<pid>.<n>" that runs killed while writing `path` left
// behind; returns how many. A temporary goes only when it was last written before this process
// started (so it is no write of this process) and its pid is no other live process on this
// host (so a concurrent writer here keeps its file; a previous run may have had this process's
// pid). Pids mean nothing across hosts: two jobs must not write one path at once. Best effort:
// a file that cannot be examined or removed is left.
inline std::size_t remove_stale_temporaries(const std::string& path) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  const fs::path directory = target.has_parent_path() ? target.parent_path() : fs::path(".");
  const std::string file_name = target.filename().string();
  std::size_t removed = 0;
  std::error_code error;
  for (fs::directory_iterator it(directory, error), end; !error && it != end; it.increment(error)) {
    const std::string name = it->path().filename().string();
    const long pid = detail::temporary_pid(name, file_name);
    if (pid < 0) continue;
    std::error_code ignored;
    if (!it->is_regular_file(ignored)) continue;
    const auto written = fs::last_write_time(it->path(), ignored);
    if (ignored || written >= detail::process_start || detail::other_live_process(pid)) continue;
    if (fs::remove(it->path(), ignored)) ++removed;
  }
  return removed;
}

// Makes a rename into the directory of `path` durable. Best effort: some file systems refuse
// fsync on directories.
inline void sync_directory_of(const std::string& path) noexcept {
  const auto slash = path.find_last_of('/');
  const std::string directory = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  const int fd = ::open(directory.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  (void)::fsync(fd);
  ::close(fd);
}

class AtomicFileWriter {
 public:
  // `operation` names the caller in messages, e.g. "trident::io::write_safetensors".
  AtomicFileWriter(std::string path, std::string operation)
      : m_path(std::move(path)), m_operation(std::move(operation)) {
    m_temporary = temporary_name_for(m_path);
    m_fd = ::open(m_temporary.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_TRUNC | O_CLOEXEC, 0666);
    require(m_fd >= 0, m_operation, ": cannot create the temporary file '", m_temporary, "' for '", m_path,
            "': ", std::strerror(errno));
  }

  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  // Without a successful commit() the temporary is removed: an exception anywhere between
  // open and rename (a failed write, fsync, close or rename) leaves `path` as it was.
  ~AtomicFileWriter() { abandon(); }

  const std::string& path() const { return m_path; }
  const std::string& temporary_path() const { return m_temporary; }
  std::uint64_t bytes_written() const { return m_bytes_written; }

  // Test seam (fault_injection.hpp): this writer fails as `fault` says, at its first chance.
  void inject(WriteFault fault) { m_fault = fault; }

  void write(const void* data, std::size_t bytes) {
    require(m_fd >= 0, m_operation, ": write to '", m_path, "' after commit");
    const auto* cursor = static_cast<const char*>(data);
    while (bytes > 0) {
      const ssize_t written = write_some(cursor, bytes);
      const int error = errno;
      if (written < 0 && error == EINTR) continue;
      require(written > 0, m_operation, ": writing ", bytes, " bytes at offset ", m_bytes_written, " of '", m_temporary,
              "' failed: ", written < 0 ? std::strerror(error) : "no progress", injected());
      cursor += written;
      bytes -= static_cast<std::size_t>(written);
      m_bytes_written += static_cast<std::uint64_t>(written);
    }
  }

  // Flushes the data to disk and renames the temporary over the real name.
  void commit() {
    require(m_fd >= 0, m_operation, ": '", m_path, "' committed twice");
    // errno is read right after each call: the order of a call's arguments is unspecified.
    const bool synced = ::fsync(m_fd) == 0;
    int error = errno;
    require(synced, m_operation, ": fsync of '", m_temporary, "' failed: ", std::strerror(error));
    const int fd = m_fd;
    m_fd = -1;
    const bool closed = ::close(fd) == 0;
    error = errno;
    require(closed, m_operation, ": closing '", m_temporary, "' failed: ", std::strerror(error));
    const bool fail_rename = m_fault == WriteFault::rename;
    m_faulted = m_faulted || fail_rename;
    const bool renamed = !fail_rename && std::rename(m_temporary.c_str(), m_path.c_str()) == 0;
    error = fail_rename ? EIO : errno;
    require(renamed, m_operation, ": renaming '", m_temporary, "' to '", m_path, "' failed: ", std::strerror(error),
            injected());
    m_committed = true;
    sync_directory_of(m_path);
  }

 private:
  // ::write, unless an injected fault stands in for it: a short write stores half the bytes
  // and then makes no progress, as a disk that just filled up.
  ssize_t write_some(const char* data, std::size_t bytes) {
    if (m_fault == WriteFault::short_write) {
      const bool first = !m_faulted;
      m_faulted = true;
      return first ? ::write(m_fd, data, bytes / 2) : 0;
    }
    if (m_fault == WriteFault::enospc) {
      m_faulted = true;
      errno = ENOSPC;
      return -1;
    }
    return ::write(m_fd, data, bytes);
  }

  const char* injected() const { return m_faulted ? " (injected fault)" : ""; }

  void abandon() noexcept {
    if (m_fd >= 0) {
      ::close(m_fd);
      m_fd = -1;
    }
    if (!m_committed) ::unlink(m_temporary.c_str());
  }

  std::string m_path;
  std::string m_operation;
  std::string m_temporary;
  int m_fd = -1;
  bool m_committed = false;
  std::uint64_t m_bytes_written = 0;
  WriteFault m_fault = WriteFault::none;
  bool m_faulted = false;
};

}  // namespace trident::io
