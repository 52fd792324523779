#pragma once
// A nonblocking operation in flight. It owns what the transfer needs until it completes (packed
// and host-staging temporaries, counts arrays, a reference to the user's Views) and, on
// wait(), finishes the operation: copies results out of host staging, unpacks them into
// strided Views and fences. A Request destroyed while still pending waits in its destructor,
// because freeing memory MPI is still writing would corrupt it. A composite operation (one
// made of several collectives in turn) chains its stages with then(): finishing one stage
// starts the next, and the Request stays pending until the last is done.

#include <trident/comm/communicator.hpp>
#include <trident/comm/watchdog.hpp>
#include <trident/core/profiling.hpp>

#include <mpi.h>

#include <algorithm>
#include <exception>
#include <functional>
#include <utility>
#include <vector>

namespace trident {
namespace comm {

class Request {
 public:
  using Completion = std::function<void(const MPI_Status&)>;
  using Continuation = std::function<Request()>;
  using Ready = std::function<bool()>;

  // A request with nothing to wait for.
  Request() = default;
  // `label` names what a wait on it is for, should it outlast the wait timeout (watchdog.hpp).
  Request(MPI_Request request, Impl::WaitLabel label, Completion on_completion)
      : m_request(request), m_label(std::move(label)), m_on_completion(std::move(on_completion)) {}
  // An operation another library carries (NCCL): `ready` tells without blocking whether it is
  // done, and `on_completion` waits for it and finishes it.
  Request(Ready ready, Impl::WaitLabel label, Completion on_completion)
      : m_label(std::move(label)), m_on_completion(std::move(on_completion)), m_ready(std::move(ready)) {}

  Request(Request&& other) noexcept
      : m_request(std::exchange(other.m_request, MPI_REQUEST_NULL)),
        m_label(std::move(other.m_label)),
        m_on_completion(std::exchange(other.m_on_completion, nullptr)),
        m_next(std::exchange(other.m_next, nullptr)),
        m_ready(std::exchange(other.m_ready, nullptr)) {}
  Request& operator=(Request&& other) {
    if (this != &other) {
      wait();
      take_over(other);
    }
    return *this;
  }
  Request(const Request&) = delete;
  Request& operator=(const Request&) = delete;
  ~Request() {
    if (!pending()) return;
    try {
      wait();
    } catch (...) {  // a destructor must not throw; wait() explicitly to see the error
    }
  }

  // True until wait() or a successful test() has finished the operation (every stage of it).
  bool pending() const {
    return m_request != MPI_REQUEST_NULL || static_cast<bool>(m_on_completion) || static_cast<bool>(m_next);
  }

  // Once this operation has finished (its last stage, if it has several), `next` starts the
  // following one, whose Request this one becomes. Composite operations in flight together must
  // be tested or waited in the order they were started (wait_all does), so that every rank
  // starts their later stages in the same order.
  Request&& then(Continuation next) && {
    if (!m_next) {
      m_next = std::move(next);
    } else {
      m_next = [first = std::move(m_next), after = std::move(next)]() mutable -> Request {
        return first().then(std::move(after));
      };
    }
    return std::move(*this);
  }

  void wait() {
    if (!pending()) return;
    ScopedRegion region("trident::comm::wait");
    while (pending()) {
      const Impl::WaitGuard guard(m_label);
      MPI_Status status{};
      Impl::check_mpi(MPI_Wait(&m_request, &status), "trident::comm::wait");
      complete(status);
    }
  }

  // Finishes the current stage if MPI has completed it (starting the next one); never blocks.
  // True once the whole operation is done.
  bool test() {
    if (!pending()) return true;
    if (m_ready && !m_ready()) return false;
    int done = 0;
    MPI_Status status{};
    Impl::check_mpi(MPI_Test(&m_request, &done, &status), "trident::comm::test");
    if (done) complete(status);
    return !pending();
  }

  // Finishes all of them. Operations of one stage are waited at once (one MPI_Waitall), then
  // completed in order. Composite ones are waited one after the other, each to its last stage:
  // a Waitall over the current stages of several rings in flight deadlocks, because a rank
  // that has run ahead in one ring waits there for a neighbour that waits, in its own Waitall,
  // for this rank's next stage of another ring. In order, every rank finishes the earliest
  // unfinished operation first, whose stages depend on no later one. If a completion throws,
  // the rest still complete and the first error is rethrown.
  friend void wait_all(std::vector<Request>& requests) {
    ScopedRegion region("trident::comm::wait_all");
    const bool composite = std::any_of(requests.begin(), requests.end(),
                                       [](const Request& request) { return static_cast<bool>(request.m_next); });
    if (!composite) {
      wait_all_once(requests);
      return;
    }
    std::exception_ptr first_error;
    for (auto& request : requests) {
      try {
        request.wait();
      } catch (...) {
        if (!first_error) first_error = std::current_exception();
      }
    }
    if (first_error) std::rethrow_exception(first_error);
  }

 private:
  static void wait_all_once(std::vector<Request>& requests) {
    std::vector<MPI_Request> handles;
    handles.reserve(requests.size());
    const Request* first_pending = nullptr;
    for (const auto& request : requests) {
      handles.push_back(request.m_request);
      if (first_pending == nullptr && request.m_request != MPI_REQUEST_NULL) first_pending = &request;
    }
    const Impl::WaitGuard guard(first_pending != nullptr ? first_pending->m_label : Impl::WaitLabel{});
    std::vector<MPI_Status> statuses(handles.size());
    Impl::check_mpi(MPI_Waitall(static_cast<int>(handles.size()), handles.data(), statuses.data()),
                    "trident::comm::wait_all");
    std::exception_ptr first_error;
    for (std::size_t i = 0; i < requests.size(); ++i) {
      requests[i].m_request = handles[i];
      try {
        requests[i].complete(statuses[i]);
      } catch (...) {
        if (!first_error) first_error = std::current_exception();
      }
    }
    if (first_error) std::rethrow_exception(first_error);
  }

  void complete(const MPI_Status& status) {
    m_ready = nullptr;
    auto on_completion = std::exchange(m_on_completion, nullptr);
    auto next = std::exchange(m_next, nullptr);
    if (on_completion) on_completion(status);
    if (next) {
      Request following = next();
      take_over(following);
    }
  }

  void take_over(Request& other) {
    m_request = std::exchange(other.m_request, MPI_REQUEST_NULL);
    m_label = std::move(other.m_label);
    m_on_completion = std::exchange(other.m_on_completion, nullptr);
    m_next = std::exchange(other.m_next, nullptr);
    m_ready = std::exchange(other.m_ready, nullptr);
  }

  MPI_Request m_request = MPI_REQUEST_NULL;
  Impl::WaitLabel m_label;
  Completion m_on_completion;  // also what keeps the operation's buffers alive
  Continuation m_next;         // the stage that follows this one, if any
  Ready m_ready;               // set only for an operation MPI does not carry
};

void wait_all(std::vector<Request>& requests);

namespace Impl {
// Every operation has one implementation; the blocking call finishes before it returns, the
// nonblocking one returns a Request that finishes it.
enum class Mode { blocking, nonblocking };
}  // namespace Impl

}  // namespace comm
}  // namespace trident
