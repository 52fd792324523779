#pragma once
// What a training step does when its loss or gradient is NaN or infinite. The loss and the
// gradient norm a trainer checks are already reduced over every rank of the run, so all ranks
// reach the same verdict in the same step:
//   stop: every rank throws, naming the step, the values and the first tensor whose gradient
//         this rank holds non-finite;
//   skip: the update is not applied (parameters and optimizer state unchanged), the step's
//         data counts as consumed, and the trainer counts the skipped steps.

#include <trident/core/error.hpp>
#include <trident/core/parameter_store.hpp>

#include <Kokkos_Core.hpp>

#include <cmath>
#include <cstdint>
#include <string>

namespace trident::train {

enum class NonFinitePolicy { stop, skip };

inline NonFinitePolicy parse_nonfinite_policy(const std::string& text) {
  require_argument(text == "stop" || text == "skip",
                   "trident::train: a non-finite step policy is 'stop' or 'skip', got '", text, "'");
  return text == "stop" ? NonFinitePolicy::stop : NonFinitePolicy::skip;
}

// The first tensor of `store` with a NaN or infinite gradient element ("" if none, or if the
// store holds no full gradients, as under ZeRO-2 and 3).
template <class Scalar, class MemorySpace>
std::string first_nonfinite_gradient(const ParameterStore<Scalar, MemorySpace>& store) {
  if (store.grads().size() != static_cast<std::size_t>(store.size())) return "";
  const auto grads = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), store.grads());
  for (const auto& t : store.tensors())
    for (std::int64_t i = 0; i < t.size(); ++i)
      if (!std::isfinite(static_cast<double>(grads(static_cast<std::size_t>(t.offset + i))))) return t.name;
  return "";
}

// True when the step may be applied. Otherwise throws under `stop`, returns false under `skip`.
template <class Scalar, class MemorySpace>
bool finite_step(std::int64_t step, double loss, double grad_norm, NonFinitePolicy policy,
                 const ParameterStore<Scalar, MemorySpace>& store) {
  if (std::isfinite(loss) && std::isfinite(grad_norm)) return true;
  if (policy == NonFinitePolicy::skip) return false;
  const std::string tensor = first_nonfinite_gradient(store);
  throw Error(trident::detail::concat("trident::train: step ", step, " has a non-finite ",
                                      std::isfinite(loss) ? "gradient" : "loss", " (loss ", loss, ", gradient norm ",
                                      grad_norm, ")",
                                      tensor.empty() ? std::string() : "; first non-finite gradient: '" + tensor + "'",
                                      "; stopping (skip such steps with the 'skip' policy)"));
}

}  // namespace trident::train
