#pragma once
// Small helpers shared by the pipeline tests.

#include <trident/pipeline/schedule.hpp>

#include <algorithm>
#include <cstddef>
#include <exception>
#include <stdexcept>
#include <string>
#include <vector>

namespace pipeline_test {

// The message of the exception of type E that `f` throws, or a marker that no E was thrown.
template <class E, class F>
std::string message_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("wrong exception type: ") + e.what();
  }
  return "no exception";
}

inline bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// The index of `action` in the list of `rank`; the tests edit schedules at such positions.
inline std::size_t index_of(const trident::pipeline::Schedule& s, int rank, const trident::pipeline::Action& action) {
  const auto& list = s.actions_of(rank);
  const auto found = std::find(list.begin(), list.end(), action);
  if (found == list.end()) throw std::logic_error("the test schedule lacks the action it edits");
  return static_cast<std::size_t>(found - list.begin());
}

}  // namespace pipeline_test
