#pragma once
// The host's last-level cache, as calibration reads it: the size of every last-level cache of the
// CPUs a node's ranks may run on, each counted once (a cache that cores share is one), from
// Linux's sysfs. Ranks bound to one socket of two meet that socket's cache alone.
//   last_level_cache_bytes(root, cpus)   of those CPUs (all where none are named); 0 where the
//                                        system does not say
//   cache_size_bytes("32768K")           sysfs's way of writing a size

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <system_error>
#include <vector>

namespace trident::plan {

// "32768K", "1M", "512": bytes; 0 for anything else.
inline double cache_size_bytes(const std::string& text) {
  std::size_t digits = 0;
  while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits]))) ++digits;
  if (digits == 0) return 0;
  const double number = std::stod(text.substr(0, digits));
  const std::string unit = text.substr(digits);
  if (unit.empty()) return number;
  switch (unit[0]) {
    case 'K':
      return number * 1024;
    case 'M':
      return number * 1024 * 1024;
    case 'G':
      return number * 1024 * 1024 * 1024;
    default:
      return 0;
  }
}

// Under `root` (sysfs's cpu folder), the last-level caches of every cpuN folder of `cpus` (every
// one where `cpus` is empty) that lists its caches (an offline CPU lists none): each cache of the
// highest level once, by the CPUs that share it.
inline double last_level_cache_bytes(const std::string& root = "/sys/devices/system/cpu",
                                     const std::vector<int>& cpus = {}) {
  const auto read = [](const std::filesystem::path& path) {
    std::ifstream in(path);
    std::string line;
    std::getline(in, line);
    return line;
  };
  int highest = 0;
  std::map<std::string, double> caches;  // of the highest level, by their CPUs
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(root, error)) {
    const std::string name = entry.path().filename().string();
    if (name.size() < 4 || name.compare(0, 3, "cpu") != 0 ||
        !std::all_of(name.begin() + 3, name.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); }))
      continue;
    if (!cpus.empty() && std::find(cpus.begin(), cpus.end(), std::atoi(name.c_str() + 3)) == cpus.end()) continue;
    const std::filesystem::path cache = entry.path() / "cache";
    for (int index = 0;; ++index) {
      const std::filesystem::path dir = cache / ("index" + std::to_string(index));
      if (!std::filesystem::exists(dir / "level", error)) break;
      if (read(dir / "type") == "Instruction") continue;
      const int level = std::atoi(read(dir / "level").c_str());
      if (level < highest) continue;
      if (level > highest) {
        highest = level;
        caches.clear();
      }
      caches[read(dir / "shared_cpu_list")] = cache_size_bytes(read(dir / "size"));
    }
  }
  double total = 0;
  for (const auto& entry : caches) total += entry.second;
  return total;
}

}  // namespace trident::plan
