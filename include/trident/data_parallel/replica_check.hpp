#pragma once
// The start-up check that every rank of a data-parallel group holds the same model: each
// hashes its parameters' names, shapes and element type (and the group's settings); a rank
// that differs makes every rank throw the same error, naming the ranks that differ, before
// any gradient is reduced with the wrong partner.

#include <trident/comm/allgather.hpp>
#include <trident/comm/communicator.hpp>
#include <trident/core/error.hpp>
#include <trident/core/parameter_store.hpp>
#include <trident/core/profiling.hpp>

#include <Kokkos_Core.hpp>

#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>

namespace trident::data_parallel {

namespace detail {

// FNV-1a: a stable 64-bit hash, the same on every machine and compiler.
class Fnv1a {
 public:
  void bytes(const void* data, std::size_t count) {
    const auto* p = static_cast<const unsigned char*>(data);
    for (std::size_t i = 0; i < count; ++i) m_hash = (m_hash ^ p[i]) * 1099511628211ull;
  }
  void text(const std::string& s) { bytes(s.c_str(), s.size() + 1); }
  void number(std::int64_t value) { bytes(&value, sizeof value); }
  std::int64_t value() const {
    std::int64_t signed_hash = 0;
    std::memcpy(&signed_hash, &m_hash, sizeof signed_hash);
    return signed_hash;
  }

 private:
  std::uint64_t m_hash = 14695981039346656037ull;
};

template <class Scalar>
std::string element_type_name() {
  if (std::is_same<Scalar, float>::value) return "float32";
  if (std::is_same<Scalar, double>::value) return "float64";
  return "scalar" + std::to_string(sizeof(Scalar) * 8);
}

}  // namespace detail

// Collective over `comm`: throws a trident::InvalidArgument on every rank when any rank's
// parameters (names, global and local shapes, element type, weight decay) or `settings`
// differ from rank 0's.
template <class Scalar, class MemorySpace>
void check_replicas_match(const comm::Communicator& comm, const ParameterStore<Scalar, MemorySpace>& store,
                          const std::string& settings) {
  ScopedRegion region("trident::data_parallel::check_replicas_match");
  detail::Fnv1a model;
  model.text(detail::element_type_name<Scalar>());
  for (const auto& t : store.tensors()) {
    model.text(t.name);
    for (auto e : t.global_shape) model.number(e);
    model.number(-1);
    for (auto e : t.local_shape) model.number(e);
    model.number(t.weight_decay ? 1 : 0);
  }
  detail::Fnv1a layout;
  layout.text(settings);
  constexpr int fields = 4;
  using HostView = Kokkos::View<std::int64_t*, Kokkos::HostSpace>;
  HostView mine("trident::data_parallel::replica_fingerprint", fields);
  HostView all("trident::data_parallel::replica_fingerprints", static_cast<std::size_t>(fields * comm.size()));
  mine(0) = model.value();
  mine(1) = static_cast<std::int64_t>(store.tensors().size());
  mine(2) = store.size();
  mine(3) = layout.value();
  comm::allgather(Kokkos::DefaultHostExecutionSpace(), comm, mine, all);

  std::string model_differs, settings_differ, described;
  for (int r = 1; r < comm.size(); ++r) {
    const std::size_t at = static_cast<std::size_t>(r * fields);
    if (all(at) != all(0)) {
      model_differs += (model_differs.empty() ? "" : ", ") + std::to_string(r);
      described += trident::detail::concat("; rank ", r, ": ", all(at + 1), " tensors, ", all(at + 2), " elements");
    }
    if (all(at + 3) != all(3)) settings_differ += (settings_differ.empty() ? "" : ", ") + std::to_string(r);
  }
  const std::string where = "trident::data_parallel: the replicas of data-parallel group '" + comm.name() + "'";
  require_argument(model_differs.empty(), where, " hold different models: rank(s) ", model_differs,
                   " differ from rank 0 in parameter names, shapes or element type (rank 0: ", all(1), " tensors, ",
                   all(2), " elements", described, ")");
  require_argument(settings_differ.empty(), where, " disagree on their settings: rank(s) ", settings_differ,
                   " differ from rank 0 (", settings, " on this rank)");
}

}  // namespace trident::data_parallel
