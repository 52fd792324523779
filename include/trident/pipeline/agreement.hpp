#pragma once
// Checks that must fail on every rank of a pipeline together. A rank that throws alone would
// leave its peers waiting in the next transfer; run_checks_together() runs the check on every
// rank, and if it failed anywhere, every rank throws the error of the lowest failing rank.

#include <trident/comm/allreduce.hpp>
#include <trident/comm/broadcast.hpp>
#include <trident/comm/communicator.hpp>
#include <trident/core/error.hpp>

#include <Kokkos_Core.hpp>

#include <cstdint>
#include <exception>
#include <string>

namespace trident::pipeline {

template <class Check>
void run_checks_together(const comm::Communicator& comm, Check&& check) {
  std::string message;
  int kind = 0;  // 0: passed, 1: InvalidArgument, 2: any other error
  try {
    check();
  } catch (const InvalidArgument& e) {
    message = e.what();
    kind = 1;
  } catch (const std::exception& e) {
    message = e.what();
    kind = 2;
  }
  if (comm.size() == 1) {
    if (kind == 1) throw InvalidArgument(message);
    if (kind == 2) throw Error(message);
    return;
  }
  const Kokkos::DefaultHostExecutionSpace host;
  Kokkos::View<std::int64_t*, Kokkos::HostSpace> first("trident::pipeline::agreement", 1);
  first(0) = kind != 0 ? comm.rank() : comm.size();
  comm::allreduce(host, comm, first, comm::ReduceOp::min);
  const int root = static_cast<int>(first(0));
  if (root == comm.size()) return;
  // The failing rank's verdict and message reach every rank.
  Kokkos::View<std::int64_t*, Kokkos::HostSpace> header("trident::pipeline::agreement", 2);
  header(0) = kind;
  header(1) = static_cast<std::int64_t>(message.size());
  comm::broadcast(host, comm, header, root);
  Kokkos::View<char*, Kokkos::HostSpace> text("trident::pipeline::agreement", static_cast<std::size_t>(header(1)));
  if (comm.rank() == root) message.copy(text.data(), message.size());
  if (header(1) > 0) comm::broadcast(host, comm, text, root);
  std::string shared(text.data(), text.size());
  if (comm.rank() != root) shared += trident::detail::concat(" (reported by pipeline rank ", root, ")");
  if (header(0) == 1) throw InvalidArgument(shared);
  throw Error(shared);
}

}  // namespace trident::pipeline
