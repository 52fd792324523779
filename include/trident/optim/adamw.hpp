#pragma once
// AdamW with torch.optim.AdamW semantics: decoupled weight decay (p -= lr*wd*p before the
// Adam update), bias-corrected moments, eps added to the corrected sqrt(v).

#include <trident/core/compat.hpp>
#include <trident/core/error.hpp>
#include <trident/core/parameter_store.hpp>
#include <trident/core/profiling.hpp>

#include <Kokkos_Core.hpp>

#include <cmath>
#include <cstdint>

namespace trident::optim {

// torch.optim.AdamW's defaults; gpt2() is the preset GPT-2 and nanoGPT train with.
struct AdamWSettings {
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.01;

  static AdamWSettings gpt2() { return {0.9, 0.95, 1e-8, 0.1}; }
};

namespace detail {

template <class ParamView, class GradView, class MomentView>
struct AdamWUpdate {
  ParamView m_param;
  GradView m_grad;
  MomentView m_exp_avg, m_exp_avg_sq;
  double m_decay_factor;  // 1 - lr*wd, or 1 where the tensor is not decayed
  double m_beta1, m_beta2, m_step_size, m_inv_sqrt_bias2, m_eps;

  KOKKOS_FUNCTION void operator()(const std::int64_t i) const {
    using Scalar = typename ParamView::non_const_value_type;
    const Scalar g = m_grad(i);
    const Scalar m = static_cast<Scalar>(m_beta1) * m_exp_avg(i) + static_cast<Scalar>(1.0 - m_beta1) * g;
    const Scalar v = static_cast<Scalar>(m_beta2) * m_exp_avg_sq(i) + static_cast<Scalar>(1.0 - m_beta2) * g * g;
    m_exp_avg(i) = m;
    m_exp_avg_sq(i) = v;
    const Scalar denom = math::sqrt(v) * static_cast<Scalar>(m_inv_sqrt_bias2) + static_cast<Scalar>(m_eps);
    m_param(i) = m_param(i) * static_cast<Scalar>(m_decay_factor) - static_cast<Scalar>(m_step_size) * m / denom;
  }
};

}  // namespace detail

// One AdamW step on matching rank-1 views (any contiguous range of the flat buffers, so a
// ZeRO shard updates only its own range). `step` counts from 1.
template <class ExecutionSpace, class ParamView, class GradView, class MomentView>
void adamw_update(const ExecutionSpace& space, const ParamView& param, const GradView& grad, const MomentView& exp_avg,
                  const MomentView& exp_avg_sq, const AdamWSettings& settings, std::int64_t step, double lr,
                  bool decay) {
  static_assert(Kokkos::SpaceAccessibility<ExecutionSpace, typename ParamView::memory_space>::accessible,
                "the execution space cannot access the parameters");
  require_argument(step >= 1, "trident::optim::adamw_update: step counts from 1, got ", step);
  const auto n = param.extent(0);
  require_argument(grad.extent(0) == n && exp_avg.extent(0) == n && exp_avg_sq.extent(0) == n,
                   "trident::optim::adamw_update: parameter has ", n, " elements but gradient has ", grad.extent(0),
                   " and moments ", exp_avg.extent(0), "/", exp_avg_sq.extent(0));
  const double bias1 = 1.0 - std::pow(settings.beta1, static_cast<double>(step));
  const double bias2 = 1.0 - std::pow(settings.beta2, static_cast<double>(step));
  detail::AdamWUpdate<ParamView, GradView, MomentView> functor{param,
                                                               grad,
                                                               exp_avg,
                                                               exp_avg_sq,
                                                               decay ? 1.0 - lr * settings.weight_decay : 1.0,
                                                               settings.beta1,
                                                               settings.beta2,
                                                               lr / bias1,
                                                               1.0 / std::sqrt(bias2),
                                                               settings.eps};
  Kokkos::parallel_for(
      "trident::optim::adamw",
      Kokkos::RangePolicy<ExecutionSpace, Kokkos::IndexType<std::int64_t>>(space, 0, static_cast<std::int64_t>(n)),
      functor);
}

// AdamW over a whole ParameterStore: owns the two moment buffers, laid out like the parameters.
template <class Scalar, class MemorySpace>
class AdamW {
 public:
  using store_type = ParameterStore<Scalar, MemorySpace>;
  using flat_view = typename store_type::flat_view;

  AdamW(const store_type& store, AdamWSettings settings)
      : m_settings(settings),
        m_exp_avg("trident::optim::exp_avg", static_cast<std::size_t>(store.size())),
        m_exp_avg_sq("trident::optim::exp_avg_sq", static_cast<std::size_t>(store.size())) {}

  // Applies step number `step` (from 1) with learning rate `lr` to every tensor.
  template <class ExecutionSpace>
  void step(const ExecutionSpace& space, const store_type& store, std::int64_t step, double lr) {
    ScopedRegion region("trident::optim::AdamW::step");
    for (const auto& t : store.tensors()) {
      adamw_update(space, store_type::vector_of(store.values(), t), store_type::vector_of(store.grads(), t),
                   store_type::vector_of(m_exp_avg, t), store_type::vector_of(m_exp_avg_sq, t), m_settings, step, lr,
                   t.weight_decay);
    }
  }

  const AdamWSettings& settings() const { return m_settings; }
  flat_view exp_avg() const { return m_exp_avg; }
  flat_view exp_avg_sq() const { return m_exp_avg_sq; }

 private:
  AdamWSettings m_settings;
  flat_view m_exp_avg, m_exp_avg_sq;
};

}  // namespace trident::optim
