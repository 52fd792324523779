#pragma once
// A small command-line parser for the examples: `--name value` and `--switch`, typed getters,
// defaults shown by --help, and a clear error for an unknown flag or a malformed value.

#include <trident/core/error.hpp>

#include <cstdint>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace trident_examples {

class Flags {
 public:
  Flags(int argc, char** argv, std::string program) : m_program(std::move(program)) {
    for (int i = 1; i < argc; ++i) {
      std::string arg = argv[i];
      if (arg.rfind("--", 0) != 0) throw trident::InvalidArgument(m_program + ": unexpected argument '" + arg + "'");
      arg = arg.substr(2);
      const auto eq = arg.find('=');
      if (eq != std::string::npos) {
        m_given[arg.substr(0, eq)] = arg.substr(eq + 1);
      } else if (i + 1 < argc && std::string(argv[i + 1]).rfind("--", 0) != 0) {
        m_given[arg] = argv[++i];
      } else {
        m_given[arg] = "";  // a switch
      }
    }
  }

  bool help_requested() const { return m_given.count("help") != 0; }

  std::string text(const std::string& name, const std::string& fallback, const std::string& help) {
    describe(name, fallback, help);
    auto it = m_given.find(name);
    return it == m_given.end() ? fallback : it->second;
  }

  template <class T>
  T number(const std::string& name, T fallback, const std::string& help) {
    std::ostringstream shown;
    shown << fallback;
    const std::string value = text(name, shown.str(), help);
    std::istringstream in(value);
    T parsed{};
    in >> parsed;
    if (in.fail() || !in.eof())
      throw trident::InvalidArgument(m_program + ": --" + name + " expects a number, got '" + value + "'");
    return parsed;
  }

  bool flag(const std::string& name, const std::string& help) {
    describe(name, "off", help);
    return m_given.count(name) != 0;
  }

  // Call after reading every flag: rejects the ones nobody asked for.
  void finish() const {
    for (const auto& [name, value] : m_given) {
      if (name != "help" && m_known.count(name) == 0)
        throw trident::InvalidArgument(m_program + ": unknown flag --" + name + " (see --help)");
    }
  }

  std::string usage() const {
    std::ostringstream out;
    out << "usage: " << m_program << " [flags]\n";
    for (const auto& line : m_lines) out << line << "\n";
    return out.str();
  }

 private:
  void describe(const std::string& name, const std::string& fallback, const std::string& help) {
    if (m_known.count(name)) return;
    m_known[name] = true;
    std::string left = "  --" + name;
    left.resize(std::max<std::size_t>(left.size() + 1, 20), ' ');
    m_lines.push_back(left + help + " [" + fallback + "]");
  }

  std::string m_program;
  std::map<std::string, std::string> m_given;
  std::map<std::string, bool> m_known;
  std::vector<std::string> m_lines;
};

}  // namespace trident_examples
