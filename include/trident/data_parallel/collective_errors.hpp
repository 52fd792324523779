#pragma once
// Failures that must stop every rank of a group together: a checkpoint only rank 0 writes, a
// file some ranks cannot read. The ranks agree on the outcome with one small all-gather, so
// none is left waiting in a collective the others abandoned.

#include <trident/comm/allgather.hpp>
#include <trident/comm/communicator.hpp>
#include <trident/core/error.hpp>

#include <Kokkos_Core.hpp>

#include <exception>
#include <string>

namespace trident::data_parallel {

// Runs `action` on every rank of `comm`. If it throws on any rank, every rank throws: a
// failing rank its own exception, the others a trident::Error naming the failing ranks.
template <class Action>
void on_every_rank_or_none(const comm::Communicator& comm, const std::string& what, Action&& action) {
  std::exception_ptr error;
  try {
    action();
  } catch (...) {
    error = std::current_exception();
  }
  using HostView = Kokkos::View<int*, Kokkos::HostSpace>;
  HostView mine("trident::data_parallel::failed", 1),
      all("trident::data_parallel::failed_all", static_cast<std::size_t>(comm.size()));
  mine(0) = error ? 1 : 0;
  comm::allgather(Kokkos::DefaultHostExecutionSpace(), comm, mine, all);
  std::string failed;
  for (int r = 0; r < comm.size(); ++r)
    if (all(r) != 0) failed += (failed.empty() ? "" : ", ") + std::to_string(r);
  if (failed.empty()) return;
  if (error) std::rethrow_exception(error);
  throw Error(trident::detail::concat(what, " failed on rank(s) ", failed, " of communicator '", comm.name(), "'"));
}

}  // namespace trident::data_parallel
