#pragma once
// Exceptions thrown by trident. Messages name the operation and the offending values, so a
// user reading one line of a log from rank 5 knows what went wrong.

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace trident {

// A run-time failure: I/O, communication, a corrupt file, a desynchronised collective.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A caller passed something that cannot work: a wrong shape, size or option.
class InvalidArgument : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

namespace detail {
template <class... Args>
std::string concat(Args&&... args) {
  std::ostringstream out;
  (out << ... << std::forward<Args>(args));
  return out.str();
}
}  // namespace detail

template <class... Args>
void require_argument(bool condition, Args&&... message) {
  if (!condition) throw InvalidArgument(detail::concat(std::forward<Args>(message)...));
}

template <class... Args>
void require(bool condition, Args&&... message) {
  if (!condition) throw Error(detail::concat(std::forward<Args>(message)...));
}

}  // namespace trident
