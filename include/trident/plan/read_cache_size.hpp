#pragma once
// The host's last-level cache, as calibration reads it: the size of every last-level cache of the
// machine's CPUs, each counted once (a cache that cores share is one), from Linux's sysfs.
//   last_level_cache_bytes()       0 where the system does not say
//   cache_size_bytes("32768K")     sysfs's way of writing a size

#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <map>
#include <string>

namespace trident::plan {

// "32768K", "1M", "512": bytes; 0 for anything else.
inline double cache_size_bytes(const std::string& text) {
  std::size_t digits = 0;
  while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits]))) ++digits;
  if (digits == 0) return 0;
  const double number = std::stod(text.substr(0, digits));
  const std::string unit = text.substr(digits);
  if (unit.empty() || unit == "\n") return number;
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

// Under `cpus` (sysfs's cpu folder), the last-level caches of cpu0, cpu1, ... until one is
// missing: each cache of the highest level once, by the CPUs that share it.
inline double last_level_cache_bytes(const std::string& cpus = "/sys/devices/system/cpu") {
  const auto read = [](const std::string& path) {
    std::ifstream in(path);
    std::string line;
    std::getline(in, line);
    return line;
  };
  int highest = 0;
  std::map<std::string, double> caches;  // of the highest level, by their CPUs
  for (int cpu = 0;; ++cpu) {
    const std::string base = cpus + "/cpu" + std::to_string(cpu) + "/cache/index";
    if (!std::ifstream(base + "0/level").good()) break;
    for (int index = 0; std::ifstream(base + std::to_string(index) + "/level").good(); ++index) {
      const std::string dir = base + std::to_string(index);
      const std::string type = read(dir + "/type");
      if (type == "Instruction") continue;
      const int level = std::atoi(read(dir + "/level").c_str());
      if (level < highest) continue;
      if (level > highest) highest = level, caches.clear();
      caches[read(dir + "/shared_cpu_list")] = cache_size_bytes(read(dir + "/size"));
    }
  }
  double total = 0;
  for (const auto& entry : caches) total += entry.second;
  return total;
}

}  // namespace trident::plan
