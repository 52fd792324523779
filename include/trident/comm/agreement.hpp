#pragma once
// Failures that must stop every rank of a group together: a setting one rank rejects, a
// checkpoint some ranks cannot read or write. A rank that threw alone would leave its peers
// waiting in the next collective; agree_on_failure() runs the action on every rank, and if it
// threw anywhere, every rank throws the same exception: the message of the lowest failing
// rank, naming the failing ranks when not all failed.
//
// The exception is an AgreedError or AgreedInvalidArgument: a program that catches one knows
// every rank of group_size() ranks holds the same message, so one rank can report it for all
// (train_gpt prints it once, from rank 0, when the group is the whole world).

#include <trident/comm/allgather.hpp>
#include <trident/comm/broadcast.hpp>
#include <trident/comm/communicator.hpp>
#include <trident/core/error.hpp>

#include <Kokkos_Core.hpp>

#include <cstdint>
#include <exception>
#include <string>

namespace trident::comm {

class AgreedFailure {
 public:
  explicit AgreedFailure(int group_size) : m_group_size(group_size) {}
  virtual ~AgreedFailure() = default;
  // How many ranks threw this exception together (the size of the agreeing communicator).
  int group_size() const { return m_group_size; }

 private:
  int m_group_size;
};

class AgreedError : public Error, public AgreedFailure {
 public:
  AgreedError(const std::string& message, int group_size) : Error(message), AgreedFailure(group_size) {}
};

class AgreedInvalidArgument : public InvalidArgument, public AgreedFailure {
 public:
  AgreedInvalidArgument(const std::string& message, int group_size)
      : InvalidArgument(message), AgreedFailure(group_size) {}
};

// Collective over `comm`. `what` names the action in the message when only some ranks failed.
template <class Action>
void agree_on_failure(const Communicator& comm, const std::string& what, Action&& action) {
  std::string message;
  std::int64_t kind = 0;  // 0: passed, 1: InvalidArgument, 2: any other exception
  try {
    action();
  } catch (const InvalidArgument& e) {
    message = e.what();
    kind = 1;
  } catch (const std::exception& e) {
    message = e.what();
    kind = 2;
  }
  const Kokkos::DefaultHostExecutionSpace host;
  const int size = comm.size();
  Kokkos::View<std::int64_t*, Kokkos::HostSpace> mine("trident::comm::agreement", 1),
      kinds("trident::comm::agreement", static_cast<std::size_t>(size));
  mine(0) = kind;
  allgather(host, comm, mine, kinds);
  int root = -1, failures = 0;
  std::string failed;
  for (int r = 0; r < size; ++r) {
    if (kinds(r) == 0) continue;
    if (root < 0) root = r;
    ++failures;
    failed += (failed.empty() ? "" : ", ") + std::to_string(r);
  }
  if (root < 0) return;
  // The lowest failing rank's message reaches every rank.
  Kokkos::View<std::int64_t*, Kokkos::HostSpace> length("trident::comm::agreement", 1);
  length(0) = static_cast<std::int64_t>(message.size());
  broadcast(host, comm, length, root);
  Kokkos::View<char*, Kokkos::HostSpace> text("trident::comm::agreement", static_cast<std::size_t>(length(0)));
  if (comm.rank() == root) message.copy(text.data(), message.size());
  if (length(0) > 0) broadcast(host, comm, text, root);
  std::string shared(text.data(), text.size());
  if (failures < size)
    shared += trident::detail::concat(" [", what, " failed on rank(s) ", failed, " of ", size, " in communicator '",
                                      comm.name(), "']");
  if (kinds(root) == 1) throw AgreedInvalidArgument(shared, size);
  throw AgreedError(shared, size);
}

}  // namespace trident::comm
