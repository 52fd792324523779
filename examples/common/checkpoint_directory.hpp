#pragma once
// A directory of checkpoints that survives a killed rank, a full disk and a corrupt file:
//
//   DIR/step-<n>.safetensors   the last K complete checkpoints, each written atomically
//   DIR/latest                 the name of the newest one, replaced atomically (temporary +
//                              rename) only after that checkpoint's checksums verified
//
// A save that fails leaves `latest` on the previous checkpoint. Resuming takes the checkpoint
// `latest` names; if it fails verification, the previous ones, newest first, saying so.
// Checkpoints newer than `latest` were never verified and are passed over. Temporaries that
// killed runs left are removed at start (io::remove_stale_temporaries).
//
// The collective functions run on every rank of the communicator and fail on all of them
// together (comm::agree_on_failure); rank 0 alone changes the directory's names.

#include <trident/comm/agreement.hpp>
#include <trident/comm/broadcast.hpp>
#include <trident/comm/communicator.hpp>
#include <trident/core/error.hpp>
#include <trident/io/atomic_file.hpp>
#include <trident/io/checksum.hpp>
#include <trident/io/safetensors_reader.hpp>

#include <Kokkos_Core.hpp>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <string>
#include <system_error>
#include <vector>

namespace trident_examples {

// `text` from rank `root` to every rank of `comm`. Collective.
inline std::string broadcast_text(const trident::comm::Communicator& comm, std::string text, int root = 0) {
  const Kokkos::DefaultHostExecutionSpace host;
  Kokkos::View<std::int64_t*, Kokkos::HostSpace> length("trident_examples::text_length", 1);
  length(0) = static_cast<std::int64_t>(text.size());
  trident::comm::broadcast(host, comm, length, root);
  Kokkos::View<char*, Kokkos::HostSpace> bytes("trident_examples::text", static_cast<std::size_t>(length(0)));
  if (comm.rank() == root) text.copy(bytes.data(), text.size());
  if (length(0) > 0) trident::comm::broadcast(host, comm, bytes, root);
  return std::string(bytes.data(), bytes.size());
}

// Every checksum that checkpoint `path` records, verified against its bytes; the tensors are
// spread over the ranks of `comm`, so each reads a share of the file. Collective; one failure
// fails every rank, naming the file and the tensor.
inline void verify_checkpoint(const trident::comm::Communicator& comm, const std::string& path) {
  namespace io = trident::io;
  trident::comm::agree_on_failure(comm, "verifying checkpoint '" + path + "'", [&] {
    const io::SafetensorsFile file(path);
    const auto recorded = file.recorded_checksums();
    std::size_t k = 0;
    bool others = false;  // checksums of an older algorithm: rank 0 verifies the whole file
    for (const auto& [name, text] : recorded) {
      if (!io::records_algorithm<io::WordSumChecksum>(text)) others = true;
      if (others || k++ % static_cast<std::size_t>(comm.size()) != static_cast<std::size_t>(comm.rank())) continue;
      trident::require(file.contains(name), "safetensors file '", path, "': the metadata holds a checksum of tensor '",
                       name, "', which the file does not hold");
      const io::TensorInfo& info = file.tensor(name);
      io::WordSumChecksum sum;
      file.add_to_checksum(name, 0, info.byte_size() / io::dtype_size(info.dtype), sum);
      file.require_checksum(name, sum.text(), text);
    }
    if (others && comm.rank() == 0) file.verify_checksums();
  });
}

class CheckpointDirectory {
 public:
  struct Stored {
    std::int64_t step = -1;
    std::string path;
  };

  // `keep`: how many complete checkpoints stay (>= 1).
  CheckpointDirectory(const trident::comm::Communicator& comm, std::string directory, int keep = 2)
      : m_comm(comm), m_directory(std::move(directory)), m_keep(std::max(keep, 1)) {}

  const std::string& path() const { return m_directory; }
  std::string file_for(std::int64_t step) const { return m_directory + "/" + name_for(step); }
  static std::string name_for(std::int64_t step) { return "step-" + std::to_string(step) + ".safetensors"; }

  // The step of a name "step-<n>.safetensors", or -1.
  static std::int64_t step_of(const std::string& name) {
    const std::string prefix = "step-", suffix = ".safetensors";
    if (name.size() <= prefix.size() + suffix.size() || name.compare(0, prefix.size(), prefix) != 0 ||
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
      return -1;
    const std::string digits = name.substr(prefix.size(), name.size() - prefix.size() - suffix.size());
    if (digits.size() > 18 || digits.find_first_not_of("0123456789") != std::string::npos) return -1;
    return std::stoll(digits);
  }

  // The checkpoints in the directory, newest first (this rank's view of it).
  std::vector<Stored> list() const {
    std::vector<Stored> found;
    std::error_code error;
    for (std::filesystem::directory_iterator it(m_directory, error), end; !error && it != end; it.increment(error)) {
      const std::int64_t step = step_of(it->path().filename().string());
      std::error_code ignored;
      if (step >= 0 && it->is_regular_file(ignored)) found.push_back({step, it->path().string()});
    }
    std::sort(found.begin(), found.end(), [](const Stored& a, const Stored& b) { return a.step > b.step; });
    return found;
  }

  // The name `latest` holds ("" when there is none or it is not a checkpoint's name).
  std::string latest() const {
    std::ifstream in(m_directory + "/latest");
    std::string name;
    if (!(in >> name) || step_of(name) < 0) return "";
    return name;
  }

  // Rank 0 removes the temporaries of writes that killed runs left (of checkpoints, of `latest`
  // and of anything else written atomically here); returns how many, on every rank. Collective.
  std::size_t remove_stale_temporaries() const {
    std::size_t removed = 0;
    if (m_comm.rank() == 0) {
      std::set<std::string> targets;
      std::error_code error;
      for (std::filesystem::directory_iterator it(m_directory, error), end; !error && it != end; it.increment(error)) {
        const std::string name = it->path().filename().string();
        const auto tmp = name.find(".tmp.");
        if (tmp != std::string::npos && tmp > 0) targets.insert(m_directory + "/" + name.substr(0, tmp));
      }
      for (const auto& target : targets) removed += trident::io::remove_stale_temporaries(target);
    }
    return static_cast<std::size_t>(std::stoull(broadcast_text(m_comm, std::to_string(removed))));
  }

  // Saves `trainer` at `step` as step-<step>.safetensors, verifies its checksums, points
  // `latest` at it and removes the checkpoints beyond the newest `keep`. Collective; a failure
  // at any point leaves `latest` naming the previous checkpoint. Returns the file's path.
  template <class Trainer>
  std::string save(const Trainer& trainer, std::int64_t step) const {
    const std::string file = file_for(step);
    trainer.save(file);
    try {
      verify_checkpoint(m_comm, file);
    } catch (const trident::comm::AgreedFailure& e) {
      throw trident::comm::AgreedError(
          "checkpoint '" + file + "' was written but does not verify, so '" + m_directory +
              "/latest' still names the previous one: " + dynamic_cast<const std::exception&>(e).what(),
          e.group_size());
    }
    trident::comm::agree_on_failure(m_comm, "pointing '" + m_directory + "/latest' at " + file, [&] {
      if (m_comm.rank() != 0) return;
      const std::string text = name_for(step) + "\n";
      trident::io::AtomicFileWriter pointer(m_directory + "/latest",
                                            "pointing '" + m_directory + "/latest' at " + file);
      pointer.write(text.data(), text.size());
      pointer.commit();
    });
    if (m_comm.rank() == 0) prune(step);
    return file;
  }

  // The checkpoint to resume from: the one `latest` names, or, if it fails verification, the
  // newest older one that verifies; each one passed over is reported to `note` (on every rank).
  // Without `latest`, every checkpoint is a candidate, newest first. Collective; throws when
  // there is none, or none verifies.
  std::string pick_for_resume(const std::function<void(const std::string&)>& note) const {
    std::string notes, listed;  // rank 0 reads the directory; every rank tries the same files
    if (m_comm.rank() == 0) {
      const auto stored = list();
      const std::string latest_name = latest();
      std::int64_t newest = -1;
      if (!latest_name.empty()) {
        if (std::filesystem::exists(m_directory + "/" + latest_name))
          newest = step_of(latest_name);
        else
          notes += "'" + m_directory + "/latest' names " + latest_name + ", which is missing\n";
      }
      for (const auto& c : stored) {
        if (newest >= 0 && c.step > newest) {
          notes += c.path + " is newer than '" + m_directory + "/latest' (never verified): passed over\n";
          continue;
        }
        listed += c.path + "\n";
      }
      const std::string legacy = m_directory + "/checkpoint.safetensors";  // of earlier versions
      if (std::filesystem::exists(legacy)) listed += legacy + "\n";
    }
    notes = broadcast_text(m_comm, notes);
    listed = broadcast_text(m_comm, listed);
    for (const auto& line : lines(notes)) note(line);
    const auto candidates = lines(listed);
    std::error_code ignored;
    trident::require_argument(
        !candidates.empty(), "--resume '", m_directory, "': no checkpoint there (",
        std::filesystem::is_directory(m_directory, ignored) ? "no step-<n>.safetensors in it" : "no such directory",
        ")");
    std::string failures;
    for (std::size_t i = 0; i < candidates.size(); ++i) {
      try {
        verify_checkpoint(m_comm, candidates[i]);
        return candidates[i];
      } catch (const trident::comm::AgreedFailure& e) {
        const std::string why = dynamic_cast<const std::exception&>(e).what();
        failures += (failures.empty() ? "" : "; ") + why;
        if (i + 1 < candidates.size())
          note(candidates[i] + " failed verification (" + why + "); falling back to " + candidates[i + 1]);
      }
    }
    throw trident::InvalidArgument("--resume '" + m_directory + "': no checkpoint there verifies: " + failures);
  }

 private:
  static std::vector<std::string> lines(const std::string& text) {
    std::vector<std::string> out;
    std::size_t start = 0;
    for (auto end = text.find('\n'); end != std::string::npos; start = end + 1, end = text.find('\n', start))
      out.push_back(text.substr(start, end - start));
    return out;
  }

  // Keeps `current` and the keep - 1 newest older checkpoints; removes the rest, and any newer
  // than `current` (left by a run this one resumed before). Best effort.
  void prune(std::int64_t current) const {
    int kept = 1;
    for (const auto& c : list()) {
      if (c.step == current) continue;
      std::error_code ignored;
      if (c.step < current && kept < m_keep)
        ++kept;
      else
        std::filesystem::remove(c.path, ignored);
    }
  }

  trident::comm::Communicator m_comm;
  std::string m_directory;
  int m_keep;
};

}  // namespace trident_examples
