#pragma once
// The examples' command lines, on CLI11 (Debian: libcli11-dev, header-only): typed flags whose
// defaults and ranges --help shows, and errors of one line that name the flag. Stricter than
// CLI11 alone, because a mistake on the command line must not start a different run:
//   - a value flag needs its value: `--resume` at the end of the line, or followed by another
//     flag (`--resume --steps 3`, which CLI11 would read as the directory "--steps"), is an error;
//   - a switch takes no value: `--recompute no` and `--recompute=no` are errors, not "on";
//   - a number is one: whole for an integer flag, finite, inside its type (`--steps 1e30` is
//     refused, not saturated) and inside the flag's range (`--lr 0` is refused);
//   - a flag given twice takes the last value (scripts append overrides to a common line).
// Every error is a UsageError. Every rank finds it alike from the same command line before any
// rank communicates, so a program prints it once (rank 0) and exits with status 2.
//
//   trident_examples::CommandLine cli("train_gpt", "Trains GPT-2.");
//   cli.number("--steps", o.steps, "total steps", trident_examples::Range::at_least(0));
//   cli.flag("--recompute", o.recompute, "recompute activations in backward");
//   if (!cli.parse(argc, argv)) { print cli.usage(); return 0; }  // --help

#include <trident/core/error.hpp>

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace trident_examples {

// A mistake on the command line (or in the flags together): every rank holds it alike.
struct UsageError : trident::InvalidArgument {
  using trident::InvalidArgument::InvalidArgument;
};

// The values a number flag accepts: from `min` to `max`, either end open or absent.
struct Range {
  double min = -std::numeric_limits<double>::infinity();
  double max = std::numeric_limits<double>::infinity();
  bool min_open = false, max_open = false;

  static Range any() { return {}; }
  static Range at_least(double low) { return {low, std::numeric_limits<double>::infinity(), false, false}; }
  static Range above(double low) { return {low, std::numeric_limits<double>::infinity(), true, false}; }
  static Range between(double low, double high) { return {low, high, false, false}; }  // [low, high]
  static Range fraction() { return {0, 1, false, true}; }                              // [0, 1)

  bool contains(double x) const { return (min_open ? x > min : x >= min) && (max_open ? x < max : x <= max); }

  // "> 0", ">= 1", "in [0, 1)", or "" for any value.
  std::string text() const {
    const bool low = std::isfinite(min), high = std::isfinite(max);
    if (low && high)
      return "in " + std::string(min_open ? "(" : "[") + shown(min) + ", " + shown(max) + (max_open ? ")" : "]");
    if (low) return (min_open ? "> " : ">= ") + shown(min);
    if (high) return (max_open ? "< " : "<= ") + shown(max);
    return "";
  }

 private:
  static std::string shown(double x) {
    std::ostringstream out;
    out << x;
    return out.str();
  }
};

namespace detail {

inline bool looks_like_flag(const std::string& arg) {
  return arg.size() > 2 && arg.compare(0, 2, "--") == 0;
}

// Parses the whole of `text` as a T; returns what is wrong with it, or "".
template <class T>
std::string parse_number(const std::string& text, T& value) {
  const bool blank = text.empty() || std::isspace(static_cast<unsigned char>(text.front())) != 0;
  char* end = nullptr;
  errno = 0;
  if constexpr (std::is_integral_v<T>) {
    const char* kind = std::is_signed_v<T> ? "an integer" : "a non-negative integer";
    if (blank || (std::is_unsigned_v<T> && text.front() == '-'))
      return std::string("expects ") + kind + ", got '" + text + "'";
    if constexpr (std::is_signed_v<T>) {
      const long long parsed = std::strtoll(text.c_str(), &end, 10);
      if (end != text.c_str() + text.size()) return std::string("expects ") + kind + ", got '" + text + "'";
      if (errno == ERANGE || parsed < static_cast<long long>(std::numeric_limits<T>::min()) ||
          parsed > static_cast<long long>(std::numeric_limits<T>::max()))
        return text + " is out of range (at most " + std::to_string(std::numeric_limits<T>::max()) + ")";
      value = static_cast<T>(parsed);
    } else {
      const unsigned long long parsed = std::strtoull(text.c_str(), &end, 10);
      if (end != text.c_str() + text.size()) return std::string("expects ") + kind + ", got '" + text + "'";
      if (errno == ERANGE || parsed > static_cast<unsigned long long>(std::numeric_limits<T>::max()))
        return text + " is out of range (at most " + std::to_string(std::numeric_limits<T>::max()) + ")";
      value = static_cast<T>(parsed);
    }
  } else {
    const double parsed = blank ? 0.0 : std::strtod(text.c_str(), &end);
    if (blank || end != text.c_str() + text.size()) return "expects a number, got '" + text + "'";
    if (!std::isfinite(parsed)) return "expects a finite number, got '" + text + "'";  // overflow too
    value = static_cast<T>(parsed);
  }
  return "";
}

// How far apart two names are (edits), for "did you mean".
inline std::size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = up;
    }
  }
  return row[b.size()];
}

}  // namespace detail

class CommandLine {
 public:
  CommandLine(std::string program, const std::string& description) : m_app(description, program), m_program(program) {
    m_app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
    m_app.get_formatter()->column_width(34);
  }

  const std::string& program() const { return m_program; }
  CLI::App& app() { return m_app; }

  // A number flag: `value` holds the default and receives the value.
  template <class T>
  CLI::Option* number(const std::string& name, T& value, const std::string& help, Range range = Range::any()) {
    static_assert(std::is_arithmetic_v<T> && !std::is_same_v<T, bool>, "a number flag needs a number");
    const std::string kind = std::is_integral_v<T> ? "INT" : "NUMBER";
    CLI::Validator check(
        [range](std::string& text) -> std::string {
          T parsed{};
          const std::string wrong = detail::parse_number(text, parsed);
          if (!wrong.empty()) return wrong;
          if (!range.contains(static_cast<double>(parsed))) return "must be " + range.text() + ", got " + text;
          return "";
        },
        "", "range");
    const std::string limits = range.text();
    return m_app.add_option(name, value, limits.empty() ? help : help + " (" + limits + ")")
        ->capture_default_str()
        ->type_name(kind)
        ->check(check);
  }

  // A text flag (a path, a list); `value` holds the default ("" shows none).
  CLI::Option* text(const std::string& name, std::string& value, const std::string& help) {
    auto* option = m_app.add_option(name, value, help)->type_name("TEXT");
    if (!value.empty()) option->capture_default_str();
    return option;
  }

  // A text flag with a fixed set of values.
  CLI::Option* choice(const std::string& name, std::string& value, std::vector<std::string> choices,
                      const std::string& help) {
    std::string listed;
    for (std::size_t i = 0; i < choices.size(); ++i)
      listed += (i == 0 ? "" : i + 1 == choices.size() ? " or " : ", ") + choices[i];
    CLI::Validator check(
        [choices, listed](std::string& text) -> std::string {
          for (const auto& c : choices)
            if (text == c) return "";
          return "must be " + listed + ", got '" + text + "'";
        },
        "", "choice");
    std::string names;
    for (const auto& c : choices) names += (names.empty() ? "" : "|") + c;
    return m_app.add_option(name, value, help)->capture_default_str()->type_name(names)->check(check);
  }

  // A switch: present or not; it takes no value.
  CLI::Option* flag(const std::string& name, bool& value, const std::string& help) {
    return m_app.add_flag(name, value, help)->disable_flag_override();
  }

  // Whether `name` was on the command line (after parse()).
  bool given(const std::string& name) const { return m_app.count(name) > 0; }

  std::string usage() const { return m_app.help(); }

  // Parses the command line (after Kokkos took its own flags out). Returns false when --help
  // asked for the usage (usage() has it); throws UsageError for anything wrong.
  bool parse(int argc, char** argv) {
    std::vector<std::string> args(argv + 1, argv + argc);
    check_shape(args);
    try {
      std::vector<std::string> reversed(args.rbegin(), args.rend());  // CLI11 parses from the back
      m_app.parse(reversed);
    } catch (const CLI::CallForHelp&) {
      return false;
    } catch (const CLI::ParseError& e) {
      throw UsageError(e.what());
    }
    return true;
  }

 private:
  static bool is_switch(const CLI::Option* option) { return option->get_expected_max() == 0; }

  // What CLI11 would take differently from what was meant: a value flag without its value, a
  // switch with one, an unknown flag, a stray argument. The first one found is the error.
  void check_shape(const std::vector<std::string>& args) const {
    const auto fail = [](const std::string& message) { throw UsageError(message); };
    for (std::size_t i = 0; i < args.size(); ++i) {
      const std::string& arg = args[i];
      if (arg == "--") fail("unexpected argument '--' (every flag is --name value or --switch)");
      const bool dashed =
          arg.size() > 1 && arg[0] == '-' && !std::isdigit(static_cast<unsigned char>(arg[1])) && arg[1] != '.';
      if (!dashed) {
        const CLI::Option* before = i > 0 ? m_app.get_option_no_throw(args[i - 1]) : nullptr;
        if (before != nullptr && is_switch(before))
          fail(args[i - 1] + " is a switch and takes no value, got '" + arg + "' after it (leave the value out)");
        fail("unexpected argument '" + arg + "' (every flag is --name value or --switch)");
      }
      const auto equals = arg.find('=');
      const std::string name = arg.substr(0, equals);
      const CLI::Option* option = m_app.get_option_no_throw(name);
      if (option == nullptr) fail("unknown flag " + name + suggestion(name) + " (see --help)");
      if (is_switch(option)) {
        if (equals != std::string::npos)
          fail(name + " is a switch and takes no value, got '" + arg + "' (give " + name + " alone)");
        continue;
      }
      if (equals != std::string::npos) {
        if (equals + 1 == arg.size()) fail(name + " needs a value, got '" + arg + "'");
        continue;
      }
      if (i + 1 == args.size()) fail(name + " needs a value, but the command line ends after it");
      const std::string& next = args[i + 1];
      if (detail::looks_like_flag(next)) fail(name + " needs a value, but the next argument is the flag " + next);
      if (next.empty()) fail(name + " needs a value, got ''");
      ++i;
    }
  }

  // " (did you mean --layers?)" for the closest known flag, if one is close.
  std::string suggestion(const std::string& name) const {
    std::string best;
    std::size_t distance = 3;
    for (const CLI::Option* option : m_app.get_options()) {
      for (const auto& long_name : option->get_lnames()) {
        const std::string known = "--" + long_name;
        const std::size_t d = detail::edit_distance(name, known);
        if (d < distance) {
          distance = d;
          best = known;
        }
      }
    }
    return best.empty() ? "" : " (did you mean " + best + "?)";
  }

  CLI::App m_app;
  std::string m_program;
};

}  // namespace trident_examples
