#pragma once
// Writes a file so that readers see either the old file or the complete new one, never a
// partial one: the bytes go to a temporary name in the same directory, are flushed to disk,
// and only then renamed over the real name (rename() within one file system is atomic).
// A checkpoint interrupted by a crash or a full disk leaves the previous checkpoint intact.

#include <trident/core/error.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>

namespace trident::io {

// A name beside `path` for the bytes of a file being written. The pid and a counter keep
// concurrent writers (processes or threads) off each other's temporaries.
inline std::string temporary_name_for(const std::string& path) {
  static std::atomic<unsigned> counter{0};
  return path + ".tmp." + std::to_string(static_cast<long>(::getpid())) + "." + std::to_string(counter.fetch_add(1));
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

  // Without commit() the temporary is removed: an exception between open and commit leaves nothing.
  ~AtomicFileWriter() { abandon(); }

  const std::string& path() const { return m_path; }
  const std::string& temporary_path() const { return m_temporary; }
  std::uint64_t bytes_written() const { return m_bytes_written; }

  void write(const void* data, std::size_t bytes) {
    require(m_fd >= 0, m_operation, ": write to '", m_path, "' after commit");
    const auto* cursor = static_cast<const char*>(data);
    while (bytes > 0) {
      const ssize_t written = ::write(m_fd, cursor, bytes);
      if (written < 0 && errno == EINTR) continue;
      require(written > 0, m_operation, ": writing ", bytes, " bytes at offset ", m_bytes_written, " of '", m_temporary,
              "' failed: ", written < 0 ? std::strerror(errno) : "no progress");
      cursor += written;
      bytes -= static_cast<std::size_t>(written);
      m_bytes_written += static_cast<std::uint64_t>(written);
    }
  }

  // Flushes the data to disk and renames the temporary over the real name.
  void commit() {
    require(m_fd >= 0, m_operation, ": '", m_path, "' committed twice");
    require(::fsync(m_fd) == 0, m_operation, ": fsync of '", m_temporary, "' failed: ", std::strerror(errno));
    const int fd = m_fd;
    m_fd = -1;
    require(::close(fd) == 0, m_operation, ": closing '", m_temporary, "' failed: ", std::strerror(errno));
    require(std::rename(m_temporary.c_str(), m_path.c_str()) == 0, m_operation, ": renaming '", m_temporary, "' to '",
            m_path, "' failed: ", std::strerror(errno));
    m_committed = true;
    sync_directory_of(m_path);
  }

 private:
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
};

}  // namespace trident::io
