#pragma once
// A fresh directory for a test's files, removed with everything in it when the test ends.

#include <mpi.h>
#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace trident_test {

// The names in a directory, sorted: shows leftovers such as temporaries.
inline std::vector<std::string> sorted_entries(const std::filesystem::path& directory) {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(directory)) names.push_back(entry.path().filename());
  std::sort(names.begin(), names.end());
  return names;
}

class TemporaryDirectory {
 public:
  TemporaryDirectory() {
    std::string pattern = (std::filesystem::temp_directory_path() / "trident-test-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("cannot create a directory from " + pattern);
    m_path = pattern;
  }
  ~TemporaryDirectory() {
    std::error_code ignored;
    std::filesystem::remove_all(m_path, ignored);
  }
  TemporaryDirectory(const TemporaryDirectory&) = delete;
  TemporaryDirectory& operator=(const TemporaryDirectory&) = delete;

  const std::filesystem::path& path() const { return m_path; }
  std::string file(const std::string& name) const { return (m_path / name).string(); }

  std::vector<std::string> entries() const { return sorted_entries(m_path); }

 private:
  std::filesystem::path m_path;
};

// One directory for every rank of MPI_COMM_WORLD: rank 0 makes and removes it, the others use
// its name. Construction and destruction are collective.
class SharedTemporaryDirectory {
 public:
  SharedTemporaryDirectory() {
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    std::string name;
    if (rank == 0) {
      m_owner = std::make_unique<TemporaryDirectory>();
      name = m_owner->path().string();
    }
    int length = static_cast<int>(name.size());
    MPI_Bcast(&length, 1, MPI_INT, 0, MPI_COMM_WORLD);
    name.resize(static_cast<std::size_t>(length));
    MPI_Bcast(name.data(), length, MPI_CHAR, 0, MPI_COMM_WORLD);
    m_path = name;
  }
  ~SharedTemporaryDirectory() { MPI_Barrier(MPI_COMM_WORLD); }
  SharedTemporaryDirectory(const SharedTemporaryDirectory&) = delete;
  SharedTemporaryDirectory& operator=(const SharedTemporaryDirectory&) = delete;

  const std::filesystem::path& path() const { return m_path; }
  std::string file(const std::string& name) const { return (m_path / name).string(); }
  std::vector<std::string> entries() const { return sorted_entries(m_path); }

 private:
  std::unique_ptr<TemporaryDirectory> m_owner;  // on rank 0
  std::filesystem::path m_path;
};

inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + path);
}

inline std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

}  // namespace trident_test
