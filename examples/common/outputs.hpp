#pragma once
// The examples' outputs, checked before the first step: a run that cannot write its checkpoint
// or its log must say so at once, not after hours of training. What can be created (missing
// directories) is created; what cannot be written (an existing directory given as a file, a
// directory under a file, a read-only or full file system, no permission) is refused with the
// flag, the path and the reason. A probe file is created and removed, so the answer is the file
// system's, not a guess from permission bits (root passes those, a read-only mount does not).
//
// These run on one rank; a program runs them on every rank inside comm::agree_on_failure, so
// all ranks stop together with one message.

#include <trident/core/error.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>
#include <system_error>

namespace trident_examples {

namespace detail {

// Why `directory` cannot be made: the first of its ancestors that exists but is no directory,
// or what the file system said.
inline std::string why_not_a_directory(const std::filesystem::path& directory, const std::error_code& error) {
  namespace fs = std::filesystem;
  for (fs::path p = directory; !p.empty(); p = p.parent_path()) {
    std::error_code ignored;
    const auto status = fs::status(p, ignored);
    if (fs::exists(status) && !fs::is_directory(status)) return "'" + p.string() + "' exists and is not a directory";
    if (p == p.parent_path()) break;
  }
  return error ? error.message() : "it is not a directory";
}

// Creates `directory` if missing; throws naming `flag` when it is not a directory afterwards.
inline void make_directory(const std::string& flag, const std::string& path, const std::filesystem::path& directory) {
  namespace fs = std::filesystem;
  std::error_code error;
  fs::create_directories(directory, error);  // several ranks may race: the one that loses sees it exists
  std::error_code ignored;
  if (!fs::is_directory(directory, ignored))
    throw trident::InvalidArgument(flag + " '" + path + "': cannot create the directory '" + directory.string() +
                                   "': " + why_not_a_directory(directory, error));
}

// A new file can be created in `directory` (and removed again).
inline void probe_directory(const std::string& flag, const std::string& path, const std::filesystem::path& directory,
                            int rank) {
  const std::string probe =
      (directory / (".trident-probe." + std::to_string(rank) + "." + std::to_string(static_cast<long>(::getpid()))))
          .string();
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  const int error = errno;
  if (fd < 0 && error != EEXIST)
    throw trident::InvalidArgument(flag + " '" + path + "': cannot create files in '" + directory.string() +
                                   "': " + std::strerror(error));
  if (fd >= 0) {
    ::close(fd);
    ::unlink(probe.c_str());
  }
}

}  // namespace detail

// A file this run will write (atomically: a temporary beside it, renamed over it), or append
// to (`append`: the file itself must open for writing if it exists).
inline void prepare_output_file(const std::string& flag, const std::string& path, int rank, bool append = false) {
  namespace fs = std::filesystem;
  if (path.empty()) return;
  std::error_code ignored;
  const fs::path target(path);
  if (fs::is_directory(target, ignored))
    throw trident::InvalidArgument(flag + " '" + path + "' is an existing directory; give a file name, e.g. '" +
                                   (target / "out").string() + "'");
  if (path.back() == '/') throw trident::InvalidArgument(flag + " '" + path + "' ends with '/'; give a file name");
  const fs::path directory = target.has_parent_path() ? target.parent_path() : fs::path(".");
  detail::make_directory(flag, path, directory);
  detail::probe_directory(flag, path, directory, rank);
  if (append && fs::exists(target, ignored)) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
    const int error = errno;
    if (fd < 0) throw trident::InvalidArgument(flag + " '" + path + "': cannot append to it: " + std::strerror(error));
    ::close(fd);
  }
}

// A directory this run will write files into.
inline void prepare_output_directory(const std::string& flag, const std::string& path, int rank) {
  if (path.empty()) return;
  detail::make_directory(flag, path, path);
  detail::probe_directory(flag, path, path, rank);
}

}  // namespace trident_examples
