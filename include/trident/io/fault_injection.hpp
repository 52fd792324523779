#pragma once
// A test seam for the checkpoint writers (io::write_safetensors, io::write_safetensors_parallel):
// one chosen checkpoint write fails on a chosen rank the way a full disk or a broken file system
// makes it fail, so tests can show that a failed save is reported on every rank, leaves no
// temporary and leaves the previous checkpoint as it was. Nothing else reads it.
//
//   TRIDENT_FAULT_INJECT=<fault>[:<rank>][@<write>]      e.g. enospc, short_write:1, rename:0@2
//
//   fault  short_write: the data write stores fewer bytes than asked (under MPI-IO it still
//            reports success, as a full disk can);
//          enospc: the data write fails with "no space left on device";
//          rename: renaming the finished temporary over the real name fails (EIO).
//   rank   the rank, in the writing communicator, that fails; every rank when left out. The
//          one-rank writer counts as rank 0 (of its own group). Only a rank with bytes to write
//          can fail a write, and only the rank that renames (rank 0) can fail a rename.
//   write  which checkpoint write of this process fails, counting from 1 (the default); every
//          write counts on every rank, whether it fails there or not, and the fault fires once.
//
// The variable is read at the first checkpoint write of the process; set_fault_injection()
// replaces it from code. Unused, it costs one getenv per process and one uncontended lock per
// checkpoint write.

#include <trident/core/error.hpp>

#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <string>

namespace trident::io {

enum class WriteFault { none, short_write, enospc, rename };

struct FaultInjection {
  WriteFault fault = WriteFault::none;
  int rank = -1;           // -1: every rank
  std::int64_t write = 1;  // the checkpoint write that fails, counting from 1
};

// Parses a value of TRIDENT_FAULT_INJECT; an empty text injects nothing.
inline FaultInjection parse_fault_injection(const std::string& text) {
  FaultInjection result;
  if (text.empty()) return result;
  const auto refuse = [&] {
    return InvalidArgument(trident::detail::concat(
        "trident::io: TRIDENT_FAULT_INJECT must be short_write, enospc or rename, optionally followed "
        "by :<rank> and @<write> (e.g. enospc:1@2), got '",
        text, "'"));
  };
  const auto number = [&](const std::string& digits) {
    if (digits.empty() || digits.size() > 9 || digits.find_first_not_of("0123456789") != std::string::npos)
      throw refuse();
    return std::stoi(digits);
  };
  std::string rest = text;
  if (const auto at = rest.find('@'); at != std::string::npos) {
    result.write = number(rest.substr(at + 1));
    if (result.write < 1) throw refuse();
    rest.resize(at);
  }
  if (const auto colon = rest.find(':'); colon != std::string::npos) {
    result.rank = number(rest.substr(colon + 1));
    rest.resize(colon);
  }
  if (rest == "short_write")
    result.fault = WriteFault::short_write;
  else if (rest == "enospc")
    result.fault = WriteFault::enospc;
  else if (rest == "rename")
    result.fault = WriteFault::rename;
  else
    throw refuse();
  return result;
}

inline FaultInjection fault_injection_from_environment() {
  const char* value = std::getenv("TRIDENT_FAULT_INJECT");
  return parse_fault_injection(value == nullptr ? "" : value);
}

namespace detail {

struct FaultInjectionState {
  std::mutex mutex;
  bool initialized = false;  // the environment has been read
  FaultInjection armed;
  std::int64_t writes = 0;  // checkpoint writes since it was armed
};

inline FaultInjectionState& fault_injection_state() {
  static FaultInjectionState state;
  return state;
}

// With the state's mutex held. A bad value stays unread, so every write refuses it.
inline void read_fault_environment(FaultInjectionState& state) {
  if (state.initialized) return;
  state.armed = fault_injection_from_environment();
  state.initialized = true;
}

// Called once per checkpoint write by every rank that takes part: the fault this rank must
// make happen in it, if this is the armed write.
inline WriteFault take_write_fault(int rank) {
  auto& state = fault_injection_state();
  const std::lock_guard<std::mutex> lock(state.mutex);
  read_fault_environment(state);
  if (state.armed.fault == WriteFault::none || ++state.writes < state.armed.write) return WriteFault::none;
  const FaultInjection fired = state.armed;
  state.armed = FaultInjection{};
  state.writes = 0;
  return fired.rank < 0 || fired.rank == rank ? fired.fault : WriteFault::none;
}

}  // namespace detail

// Arms `injection` for the coming checkpoint writes of this process (counting them from now),
// replacing what the environment or an earlier call armed; FaultInjection{} disarms.
inline void set_fault_injection(const FaultInjection& injection) {
  auto& state = detail::fault_injection_state();
  const std::lock_guard<std::mutex> lock(state.mutex);
  state.initialized = true;
  state.armed = injection;
  state.writes = 0;
}

// What is armed now (a fault that fired is no longer armed).
inline FaultInjection fault_injection() {
  auto& state = detail::fault_injection_state();
  const std::lock_guard<std::mutex> lock(state.mutex);
  detail::read_fault_environment(state);
  return state.armed;
}

}  // namespace trident::io
