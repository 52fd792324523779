#pragma once
// AdamW with torch.optim.AdamW semantics: decoupled weight decay (p -= lr*wd*p before the
// Adam update), bias-corrected moments, eps added to the corrected sqrt(v).

#include <trident/core/compat.hpp>
#include <trident/core/error.hpp>
#include <trident/core/half_precision.hpp>
#include <trident/core/parameter_store.hpp>
#include <trident/core/profiling.hpp>
#include <trident/ops/detail/launch.hpp>

#include <Kokkos_Core.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

namespace trident::optim {

// torch.optim.AdamW's defaults; gpt2() is the preset GPT-2 and nanoGPT train with.
struct AdamWSettings {
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.01;

  static AdamWSettings gpt2() { return {0.9, 0.95, 1e-8, 0.1}; }
};

// The coefficients of step `step` (from 1) at learning rate `lr`, in double.
struct AdamWCoefficients {
  double decay_factor;  // 1 - lr*wd, for the elements that decay (1 for the others)
  double beta1, beta2, step_size, inv_sqrt_bias2, eps;

  AdamWCoefficients(const AdamWSettings& settings, std::int64_t step, double lr)
      : decay_factor(1.0 - lr * settings.weight_decay),
        beta1(settings.beta1),
        beta2(settings.beta2),
        step_size(lr / (1.0 - std::pow(settings.beta1, static_cast<double>(step)))),
        inv_sqrt_bias2(1.0 / std::sqrt(1.0 - std::pow(settings.beta2, static_cast<double>(step)))),
        eps(settings.eps) {}
};

namespace detail {

// One element's update; `decay_factor` is the coefficients' or 1. Returns the new parameter.
// The gradient may be 16-bit (read as float).
template <class ParamView, class GradView, class MomentView>
KOKKOS_INLINE_FUNCTION typename ParamView::non_const_value_type adamw_element(
    const ParamView& param, const GradView& grad, const MomentView& exp_avg, const MomentView& exp_avg_sq,
    const AdamWCoefficients& k, double decay_factor, std::int64_t i) {
  using Scalar = typename ParamView::non_const_value_type;
  static_assert(!is_half_precision_v<Scalar> && !is_half_precision_v<typename MomentView::non_const_value_type>,
                "trident::optim::adamw_update: the parameters (master weights) and moments stay float or double; "
                "only the gradient and the model's copy may be 16-bit");
  const Scalar g = grad(i);
  const Scalar m = static_cast<Scalar>(k.beta1) * exp_avg(i) + static_cast<Scalar>(1.0 - k.beta1) * g;
  const Scalar v = static_cast<Scalar>(k.beta2) * exp_avg_sq(i) + static_cast<Scalar>(1.0 - k.beta2) * g * g;
  exp_avg(i) = m;
  exp_avg_sq(i) = v;
  const Scalar denom = math::sqrt(v) * static_cast<Scalar>(k.inv_sqrt_bias2) + static_cast<Scalar>(k.eps);
  const Scalar p = param(i) * static_cast<Scalar>(decay_factor) - static_cast<Scalar>(k.step_size) * m / denom;
  param(i) = p;
  return p;
}

// The model's copy of master weights that AdamW writes beside them; NoModelCopy: none.
struct NoModelCopy {};

template <class ParamView, class GradView, class MomentView>
struct AdamWUpdate {
  ParamView m_param;
  GradView m_grad;
  MomentView m_exp_avg, m_exp_avg_sq;
  AdamWCoefficients m_k;
  double m_decay_factor;

  KOKKOS_FUNCTION void operator()(const std::int64_t i) const {
    adamw_element(m_param, m_grad, m_exp_avg, m_exp_avg_sq, m_k, m_decay_factor, i);
  }
};

// One chunk of AdamWChunks per row: the chunk's elements, with its weight decay; with a model
// copy, each new value is also stored there (rounded, for a 16-bit copy).
template <class ParamView, class GradView, class MomentView, class Table, class CopyView>
struct AdamWChunkUpdate {
  ParamView m_param;
  GradView m_grad;
  MomentView m_exp_avg, m_exp_avg_sq;
  AdamWCoefficients m_k;
  Table m_chunks;  // [chunk][begin, end, decays]
  CopyView m_copy;

  template <class Row>
  KOKKOS_FUNCTION void operator()(const std::int64_t chunk, const Row& loops) const {
    const std::int64_t begin = m_chunks(chunk, 0);
    const double decay_factor = m_chunks(chunk, 2) != 0 ? m_k.decay_factor : 1.0;
    loops.for_each(m_chunks(chunk, 1) - begin, [&](const std::int64_t i) {
      const auto p = adamw_element(m_param, m_grad, m_exp_avg, m_exp_avg_sq, m_k, decay_factor, begin + i);
      if constexpr (!std::is_same<CopyView, NoModelCopy>::value) m_copy(begin + i) = p;
    });
  }
};

// Elements a chunk updates: enough work per team, a small table.
inline constexpr std::int64_t adamw_chunk = 16384;

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
  const AdamWCoefficients k(settings, step, lr);
  Kokkos::parallel_for(
      "trident::optim::adamw",
      Kokkos::RangePolicy<ExecutionSpace, Kokkos::IndexType<std::int64_t>>(space, 0, static_cast<std::int64_t>(n)),
      detail::AdamWUpdate<ParamView, GradView, MomentView>{param, grad, exp_avg, exp_avg_sq, k,
                                                           decay ? k.decay_factor : 1.0});
}

// What one AdamW launch updates (Apex's multi-tensor apply, as Megatron's fused Adam uses):
// the elements [begin, end) of the flat buffers that belong to tensors, neighbours of the same
// weight decay merged into runs, the runs cut into chunks. Indices count from `begin`. A step
// over a model's hundreds of tensors is then one launch instead of one per tensor.
template <class MemorySpace>
class AdamWChunks {
 public:
  using table_type = Kokkos::View<std::int64_t* [3], Kokkos::LayoutRight, MemorySpace>;

  AdamWChunks() = default;
  AdamWChunks(const std::vector<ParameterInfo>& tensors, std::int64_t begin, std::int64_t end) {
    std::vector<std::array<std::int64_t, 3>> runs;  // [begin, end, decays], from `begin`
    for (const auto& t : tensors) {
      const std::int64_t lo = std::max(begin, t.offset) - begin, hi = std::min(end, t.offset + t.size()) - begin;
      if (lo >= hi) continue;
      const std::int64_t decays = t.weight_decay ? 1 : 0;
      if (!runs.empty() && runs.back()[1] == lo && runs.back()[2] == decays) {
        runs.back()[1] = hi;
      } else {
        runs.push_back({lo, hi, decays});
      }
    }
    std::vector<std::array<std::int64_t, 3>> cut;
    for (const auto& run : runs)
      for (std::int64_t b = run[0]; b < run[1]; b += detail::adamw_chunk)
        cut.push_back({b, std::min(run[1], b + detail::adamw_chunk), run[2]});
    m_elements = end - begin;
    typename table_type::HostMirror host("trident::optim::adamw_chunks", cut.size());
    for (std::size_t c = 0; c < cut.size(); ++c)
      for (int j = 0; j < 3; ++j) host(c, j) = cut[c][static_cast<std::size_t>(j)];
    m_table = Kokkos::create_mirror_view_and_copy(MemorySpace(), host);
  }

  std::int64_t count() const { return static_cast<std::int64_t>(m_table.extent(0)); }
  // Elements of the range the chunks index (those outside every tensor are left alone).
  std::int64_t elements() const { return m_elements; }
  const table_type& table() const { return m_table; }

 private:
  table_type m_table;
  std::int64_t m_elements = 0;
};

namespace detail {

template <class ExecutionSpace, class ParamView, class GradView, class MomentView, class MemorySpace, class CopyView>
void adamw_chunks_update(const ExecutionSpace& space, const ParamView& param, const GradView& grad,
                         const MomentView& exp_avg, const MomentView& exp_avg_sq,
                         const AdamWChunks<MemorySpace>& chunks, const AdamWSettings& settings, std::int64_t step,
                         double lr, const CopyView& model_copy) {
  require_argument(step >= 1, "trident::optim::adamw_update: step counts from 1, got ", step);
  const auto n = chunks.elements();
  require_argument(
      static_cast<std::int64_t>(param.extent(0)) == n && static_cast<std::int64_t>(grad.extent(0)) == n &&
          static_cast<std::int64_t>(exp_avg.extent(0)) == n && static_cast<std::int64_t>(exp_avg_sq.extent(0)) == n,
      "trident::optim::adamw_update: the chunks cover ", n, " elements but the parameters have ", param.extent(0),
      ", the gradients ", grad.extent(0), " and the moments ", exp_avg.extent(0), "/", exp_avg_sq.extent(0));
  if constexpr (!std::is_same<CopyView, NoModelCopy>::value) {
    require_argument(static_cast<std::int64_t>(model_copy.extent(0)) == n,
                     "trident::optim::adamw_update: the chunks cover ", n,
                     " elements but the model's copy of the parameters has ", model_copy.extent(0));
  }
  using Table = typename AdamWChunks<MemorySpace>::table_type;
  ops::detail::for_each_row(
      space, "trident::optim::adamw", chunks.count(),
      AdamWChunkUpdate<ParamView, GradView, MomentView, Table, CopyView>{
          param, grad, exp_avg, exp_avg_sq, AdamWCoefficients(settings, step, lr), chunks.table(), model_copy});
}

}  // namespace detail

// One AdamW step over every chunk of `chunks` in one launch; the views hold the chunks'
// range. Element for element the same arithmetic as adamw_update.
template <class ExecutionSpace, class ParamView, class GradView, class MomentView, class MemorySpace>
void adamw_update(const ExecutionSpace& space, const ParamView& param, const GradView& grad, const MomentView& exp_avg,
                  const MomentView& exp_avg_sq, const AdamWChunks<MemorySpace>& chunks, const AdamWSettings& settings,
                  std::int64_t step, double lr) {
  detail::adamw_chunks_update(space, param, grad, exp_avg, exp_avg_sq, chunks, settings, step, lr,
                              detail::NoModelCopy{});
}

// Mixed precision: the same step on float master weights `param`, from gradients that may be
// 16-bit, also storing every new value into `model_copy` (the bfloat16 or float16 weights the
// model computes with), rounded, in the same pass: Megatron's and Apex's master-weight AdamW.
template <class ExecutionSpace, class ParamView, class GradView, class MomentView, class MemorySpace, class CopyView>
void adamw_update(const ExecutionSpace& space, const ParamView& param, const GradView& grad, const MomentView& exp_avg,
                  const MomentView& exp_avg_sq, const AdamWChunks<MemorySpace>& chunks, const AdamWSettings& settings,
                  std::int64_t step, double lr, const CopyView& model_copy) {
  detail::adamw_chunks_update(space, param, grad, exp_avg, exp_avg_sq, chunks, settings, step, lr, model_copy);
}

// AdamW over a whole ParameterStore: owns the two moment buffers, laid out like the parameters.
template <class Scalar, class MemorySpace>
class AdamW {
 public:
  using store_type = ParameterStore<Scalar, MemorySpace>;
  using flat_view = typename store_type::flat_view;

  AdamW(const store_type& store, AdamWSettings settings)
      : m_settings(settings),
        m_chunks(store.tensors(), 0, store.size()),
        m_exp_avg("trident::optim::exp_avg", static_cast<std::size_t>(store.size())),
        m_exp_avg_sq("trident::optim::exp_avg_sq", static_cast<std::size_t>(store.size())) {}

  // Applies step number `step` (from 1) with learning rate `lr` to every tensor.
  template <class ExecutionSpace>
  void step(const ExecutionSpace& space, const store_type& store, std::int64_t step, double lr) {
    ScopedRegion region("trident::optim::AdamW::step");
    adamw_update(space, store.values(), store.grads(), m_exp_avg, m_exp_avg_sq, m_chunks, m_settings, step, lr);
  }

  const AdamWSettings& settings() const { return m_settings; }
  flat_view exp_avg() const { return m_exp_avg; }
  flat_view exp_avg_sq() const { return m_exp_avg_sq; }

 private:
  AdamWSettings m_settings;
  AdamWChunks<MemorySpace> m_chunks;
  flat_view m_exp_avg, m_exp_avg_sq;
};

}  // namespace trident::optim
