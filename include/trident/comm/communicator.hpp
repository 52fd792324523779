#pragma once
// trident::comm::Communicator: an MPI communicator that is always passed in, never assumed.
// It is a handle: copies share the MPI communicator, the label, the traffic counters, the
// call sequence and the settings. Wrapping a caller's MPI_Comm does not own it; communicators
// made by split() or duplicate() are freed when their last copy goes.

#include <trident/comm/backend.hpp>
#include <trident/comm/consistency_check.hpp>
#include <trident/comm/gpu_aware.hpp>
#include <trident/comm/statistics.hpp>
#include <trident/comm/watchdog.hpp>
#include <trident/core/error.hpp>
#include <trident/core/profiling.hpp>

#include <mpi.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace trident {
namespace comm {

namespace Impl {

struct CommunicatorAccess;

// Turns an MPI error code (returned when the communicator's error handler does not abort)
// into a trident::Error naming the operation.
inline void check_mpi(int result, const char* operation) {
  if (result == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING] = {};
  int length = 0;
  MPI_Error_string(result, text, &length);
  throw Error(
      detail::concat(operation, ": MPI error ", result, ": ", std::string(text, static_cast<std::size_t>(length))));
}

// TRIDENT_COMM_CHECK=1 turns the consistency check on for every communicator made afterwards.
inline bool consistency_check_from_environment() {
  const char* value = std::getenv("TRIDENT_COMM_CHECK");
  if (value == nullptr || *value == '\0') return false;
  const std::string text(value);
  require_argument(text == "0" || text == "1", "trident::comm: TRIDENT_COMM_CHECK must be 0 or 1, got '", text, "'");
  return text == "1";
}

}  // namespace Impl

class Communicator {
 public:
  // A null communicator: what split() gives a rank that passed MPI_UNDEFINED as its color.
  Communicator() = default;

  // Wraps `comm` without owning it; the caller keeps it alive until every copy is gone.
  explicit Communicator(MPI_Comm comm, std::string label = "")
      : m_state(std::make_shared<State>(comm, false, std::move(label))) {}

  bool valid() const { return m_state != nullptr; }
  int rank() const { return state().rank; }
  int size() const { return state().size; }
  MPI_Comm mpi() const { return state().comm; }
  const std::string& label() const { return state().label; }
  // How error messages name this communicator: its label, or "unnamed".
  const std::string& name() const { return state().name; }

  // Collective: ranks with the same color form a new communicator, ordered by key (ties by rank
  // in this one). It starts with this communicator's backend, transport and consistency-check
  // settings.
  Communicator split(int color, int key, std::string label = "") const {
    ScopedRegion region("trident::comm::split");
    MPI_Comm part = MPI_COMM_NULL;
    Impl::check_mpi(MPI_Comm_split(mpi(), color, key, &part), "trident::comm::split");
    if (part == MPI_COMM_NULL) return Communicator();
    return adopt(part, std::move(label));
  }

  // Collective: a new MPI communicator over the same ranks (own message space, own counters).
  Communicator duplicate(std::string label = "") const {
    ScopedRegion region("trident::comm::duplicate");
    MPI_Comm copy = MPI_COMM_NULL;
    Impl::check_mpi(MPI_Comm_dup(mpi(), &copy), "trident::comm::duplicate");
    return adopt(copy, label.empty() ? state().label : std::move(label));
  }

  // Collective over the plane this communicator and `across` span, where every rank of this
  // one belongs to an `across` communicator of the same size (two axes of a process grid, such
  // as data- and tensor-parallel groups): a communicator of all those ranks, in MPI_COMM_WORLD
  // order. Every rank of the plane calls it with its own two communicators.
  Communicator plane_with(const Communicator& across, std::string label = "") const {
    ScopedRegion region("trident::comm::plane_with");
    const char* operation = "trident::comm::plane_with";
    int world_rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
    const int width = across.size();
    std::vector<int> row(static_cast<std::size_t>(width)), plane(static_cast<std::size_t>(width * size()));
    Impl::check_mpi(MPI_Allgather(&world_rank, 1, MPI_INT, row.data(), 1, MPI_INT, across.mpi()), operation);
    Impl::check_mpi(MPI_Allgather(row.data(), width, MPI_INT, plane.data(), width, MPI_INT, mpi()), operation);
    std::sort(plane.begin(), plane.end());
    require_argument(std::adjacent_find(plane.begin(), plane.end()) == plane.end(), operation, ": communicators '",
                     name(), "' and '", across.name(), "' share more than one rank; they are not two axes of a grid");
    MPI_Group world = MPI_GROUP_NULL, members = MPI_GROUP_NULL;
    MPI_Comm_group(MPI_COMM_WORLD, &world);
    MPI_Group_incl(world, static_cast<int>(plane.size()), plane.data(), &members);
    MPI_Comm result = MPI_COMM_NULL;
    const int created = MPI_Comm_create_group(MPI_COMM_WORLD, members, 0, &result);
    MPI_Group_free(&members);
    MPI_Group_free(&world);
    Impl::check_mpi(created, operation);
    return adopt(result, std::move(label));
  }

  void barrier() const {
    ScopedRegion region("trident::comm::barrier");
    begin_collective(make_fingerprint(Operation::barrier, ElementType::none, 0), 0);
    const Impl::WaitGuard guard(
        Impl::WaitLabel{"trident::comm::barrier", name(), state().collective_calls, -1, -1, rank()});
    Impl::check_mpi(MPI_Barrier(mpi()), "trident::comm::barrier");
  }

  const TrafficStatistics& stats() const { return state().stats; }
  void reset_stats() const { state().stats.reset(); }
  // Collectives started on this communicator so far (the number the consistency check compares).
  std::int64_t collective_calls() const { return state().collective_calls; }

  Transport transport() const { return state().transport; }
  void set_transport(Transport transport) { state().transport = transport; }
  // The library that carries collectives on device memory (backend.hpp); MPI unless
  // TRIDENT_COMM_BACKEND says otherwise. Every rank must choose the same. Communicators split
  // from this one inherit it.
  Backend backend() const { return state().backend; }
  void set_backend(Backend backend) {
    Impl::require_available(backend, "trident::comm::Communicator::set_backend");
    state().backend = backend;
  }
  bool consistency_check() const { return state().check; }
  void set_consistency_check(bool enabled) { state().check = enabled; }

 private:
  friend struct Impl::CommunicatorAccess;

  struct State {
    State(MPI_Comm comm_, bool owned_, std::string label_)
        : comm(comm_),
          owned(owned_),
          label(std::move(label_)),
          name(label.empty() ? "unnamed" : label),
          check(Impl::consistency_check_from_environment()),
          backend(Impl::backend_from_environment()) {
      require_argument(comm != MPI_COMM_NULL, "trident::comm::Communicator: cannot wrap MPI_COMM_NULL");
      int inter = 0;
      MPI_Comm_test_inter(comm, &inter);
      require_argument(inter == 0, "trident::comm::Communicator: '", label, "' is an intercommunicator");
      MPI_Comm_rank(comm, &rank);
      MPI_Comm_size(comm, &size);
    }
    ~State() {
      int finalized = 0;
      MPI_Finalized(&finalized);
      if (owned && !finalized) MPI_Comm_free(&comm);
    }
    State(const State&) = delete;
    State& operator=(const State&) = delete;

    MPI_Comm comm;
    bool owned;
    std::string label;
    std::string name;
    bool check;
    int rank = 0;
    int size = 0;
    Backend backend;
    Transport transport = Transport::automatic;
    std::shared_ptr<Impl::DeviceCommunicator> device;  // made by the first collective that needs it
    std::int64_t collective_calls = 0;
    TrafficStatistics stats;
  };

  State& state() const {
    require_argument(m_state != nullptr, "trident::comm: operation on a null communicator");
    return *m_state;
  }

  Communicator adopt(MPI_Comm comm, std::string label) const {
    Communicator result;
    result.m_state = std::make_shared<State>(comm, true, std::move(label));
    result.m_state->transport = state().transport;
    result.m_state->check = state().check;
    result.m_state->backend = state().backend;
    return result;
  }

  // Numbers the call, checks it against the other ranks when enabled, then counts it. Called
  // after the local argument checks and before any MPI call of the operation.
  void begin_collective(Fingerprint fingerprint, std::int64_t bytes) const {
    auto& s = state();
    fingerprint.sequence = ++s.collective_calls;
    if (s.check) Impl::verify_fingerprints(s.comm, name(), fingerprint);
    s.stats.record(static_cast<Operation>(fingerprint.operation), bytes);
  }

  std::shared_ptr<State> m_state;
};

namespace Impl {

// What trident's own operations need from a Communicator beyond its public face.
struct CommunicatorAccess {
  static void begin_collective(const Communicator& comm, const Fingerprint& fingerprint, std::int64_t bytes) {
    comm.begin_collective(fingerprint, bytes);
  }
  static TrafficStatistics& stats(const Communicator& comm) { return comm.state().stats; }
  static std::shared_ptr<DeviceCommunicator>& device(const Communicator& comm) { return comm.state().device; }
  // What a wait in `operation` on `comm` is for: the collective `ahead` calls past the last one
  // begun (1: a blocking call about to begin it, 0: one already begun), or with a peer, a
  // point-to-point transfer.
  static WaitLabel wait_label(const Communicator& comm, const char* operation, std::int64_t ahead, int peer = -1,
                              int tag = -1) {
    const auto& s = comm.state();
    return WaitLabel{operation, s.name, peer >= 0 ? 0 : s.collective_calls + ahead, peer, tag, s.rank};
  }
};

}  // namespace Impl
}  // namespace comm
}  // namespace trident
