#pragma once
// Hang detection: a rank that waits in a collective, a receive or a request longer than the
// wait timeout aborts the job with a message naming what it waited for (operation,
// communicator, the collective's sequence number on it, or the peer and tag), instead of
// hanging forever when another rank died, diverged or deadlocked.
//
// The timeout is TRIDENT_COMM_TIMEOUT in seconds (default 600; 0 waits forever), or
// set_wait_timeout(). A watcher thread, started with the first wait, makes no MPI call: it
// prints the message and ends the process, which makes mpiexec end the job.

#include <trident/core/error.hpp>

#include <mpi.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

namespace trident {
namespace comm {

namespace Impl {

inline double timeout_from_environment() {
  const char* value = std::getenv("TRIDENT_COMM_TIMEOUT");
  if (value == nullptr || *value == '\0') return 600.0;
  char* end = nullptr;
  const double seconds = std::strtod(value, &end);
  require_argument(end != value && *end == '\0' && seconds >= 0, "trident::comm: TRIDENT_COMM_TIMEOUT must be a ",
                   "number of seconds >= 0 (0: wait forever), got '", value, "'");
  return seconds;
}

// What a rank is waiting for.
struct WaitLabel {
  const char* operation = "trident::comm::wait";
  std::string communicator;
  std::int64_t sequence = 0;  // the collective's number on its communicator; 0 for point-to-point
  int peer = -1, tag = -1;    // point-to-point
  int rank = -1;              // this rank in the communicator

  std::string describe() const {
    std::string text = detail::concat(operation, " on communicator '", communicator, "' (its rank ", rank);
    if (sequence > 0) text += detail::concat(", collective #", sequence);
    if (peer >= 0) text += detail::concat(", peer ", peer, ", tag ", tag);
    return text + ")";
  }
};

class Watchdog {
 public:
  // Never destroyed: the watcher thread may outlive main's static destructors.
  static Watchdog& instance() {
    static Watchdog* watchdog = new Watchdog();
    return *watchdog;
  }

  double timeout() const { return m_timeout; }
  void set_timeout(double seconds) {
    require_argument(seconds >= 0, "trident::comm::set_wait_timeout: seconds must be >= 0, got ", seconds);
    std::lock_guard<std::mutex> lock(m_mutex);
    m_timeout = seconds;
    m_changed.notify_all();
  }

  void begin(WaitLabel label) {
    std::lock_guard<std::mutex> lock(m_mutex);
    if (m_depth++ > 0) return;  // the outermost wait is the one reported
    m_label = std::move(label);
    m_start = clock::now();
    if (!m_watching && m_timeout > 0) start_watching();
  }

  void end() {
    std::lock_guard<std::mutex> lock(m_mutex);
    --m_depth;
  }

 private:
  using clock = std::chrono::steady_clock;

  Watchdog() : m_timeout(timeout_from_environment()) {}

  void start_watching() {
    MPI_Comm_rank(MPI_COMM_WORLD, &m_world_rank);  // here, on the calling thread
    m_watching = true;
    std::thread([this] { watch(); }).detach();
  }

  void watch() {
    std::unique_lock<std::mutex> lock(m_mutex);
    for (;;) {
      const double poll = m_timeout > 0 ? std::min(0.1, std::max(0.001, m_timeout / 20)) : 0.1;
      m_changed.wait_for(lock, std::chrono::duration<double>(poll));
      if (m_depth == 0 || m_timeout <= 0) continue;
      const double waited = std::chrono::duration<double>(clock::now() - m_start).count();
      if (waited < m_timeout) continue;
      std::fprintf(stderr,
                   "trident::comm: world rank %d waited %.1f s in %s without the other ranks completing it; "
                   "aborting the job (TRIDENT_COMM_TIMEOUT=%g s; 0 waits forever)\n",
                   m_world_rank, waited, m_label.describe().c_str(), m_timeout);
      std::fflush(stderr);
      std::_Exit(124);
    }
  }

  std::mutex m_mutex;
  std::condition_variable m_changed;
  double m_timeout;
  int m_depth = 0;
  bool m_watching = false;
  int m_world_rank = -1;
  WaitLabel m_label;
  clock::time_point m_start;
};

// Marks the scope of a wait.
class WaitGuard {
 public:
  explicit WaitGuard(WaitLabel label) { Watchdog::instance().begin(std::move(label)); }
  ~WaitGuard() { Watchdog::instance().end(); }
  WaitGuard(const WaitGuard&) = delete;
  WaitGuard& operator=(const WaitGuard&) = delete;
};

}  // namespace Impl

// Seconds a rank may wait in one communication before it aborts the job (0: forever).
inline double wait_timeout() {
  return Impl::Watchdog::instance().timeout();
}
inline void set_wait_timeout(double seconds) {
  Impl::Watchdog::instance().set_timeout(seconds);
}

}  // namespace comm
}  // namespace trident
