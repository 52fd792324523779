#pragma once
// Dynamic loss scaling for float16 training (Megatron-LM's DynamicGradScaler; PyTorch's
// GradScaler is the case hysteresis = 1). float16's gradients underflow below 2^-24, so the
// loss's gradient is multiplied by `scale()` before the backward, and the gradients by
// 1 / scale() before the optimizer. A step whose gradients overflowed (any rank found a
// non-finite value: the caller reduces the flag over the run, so every rank agrees) is skipped
// and, after `hysteresis` such steps, the scale shrinks; after `growth_interval` clean steps in
// a row it grows.
//
//   LossScaler scaler(LossScalerSettings{});
//   const double used = scaler.scale();
//   backward with d(loss) scaled by `used`;
//   if (scaler.update(found_nonfinite)) apply the step, gradients divided by `used`;
//
// (update() may already have grown the scale for the next step, so read it before.)
//
// bfloat16 has float's range and needs no scaling: a constant scale of 1 (dynamic = false).

#include <trident/core/error.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <map>
#include <string>

namespace trident::optim {

struct LossScalerSettings {
  bool dynamic = true;
  double initial_scale = 65536.0;  // 2^16, PyTorch's start (Megatron-LM starts at 2^32)
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  std::int64_t growth_interval = 1000;  // clean steps in a row before the scale grows
  int hysteresis = 2;                   // overflowing steps tolerated before it shrinks
  double min_scale = 1.0;
  double max_scale = 16777216.0;  // 2^24 (Megatron-LM has no ceiling)

  // No scaling (bfloat16, or float): the scale stays 1, overflowing steps are still refused
  // and counted.
  static LossScalerSettings none() {
    LossScalerSettings s;
    s.dynamic = false;
    s.initial_scale = 1.0;
    return s;
  }
};

class LossScaler {
 public:
  explicit LossScaler(const LossScalerSettings& settings = {})
      : m_settings(settings), m_scale(settings.initial_scale), m_hysteresis_left(settings.hysteresis) {
    const auto& s = settings;
    const char* op = "trident::optim::LossScaler";
    require_argument(s.initial_scale > 0 && s.min_scale > 0 && s.min_scale <= s.max_scale, op,
                     ": the scales must be positive with min_scale <= max_scale (initial ", s.initial_scale, ", min ",
                     s.min_scale, ", max ", s.max_scale, ")");
    require_argument(!s.dynamic || (s.initial_scale >= s.min_scale && s.initial_scale <= s.max_scale), op,
                     ": initial_scale ", s.initial_scale, " lies outside [", s.min_scale, ", ", s.max_scale, "]");
    require_argument(s.growth_factor > 1, op, ": growth_factor must exceed 1, got ", s.growth_factor);
    require_argument(s.backoff_factor > 0 && s.backoff_factor < 1, op, ": backoff_factor must lie in (0, 1), got ",
                     s.backoff_factor);
    require_argument(s.growth_interval >= 1, op, ": growth_interval must be at least 1, got ", s.growth_interval);
    require_argument(s.hysteresis >= 1, op, ": hysteresis must be at least 1, got ", s.hysteresis);
  }

  // What d(loss) is multiplied by in this step's backward.
  double scale() const { return m_scale; }
  double inverse_scale() const { return 1.0 / m_scale; }

  // Records the step's verdict (`nonfinite`: some gradient overflowed, on any rank) and moves
  // the scale for the next step. Returns true when this step's update may be applied.
  bool update(bool nonfinite) {
    if (!m_settings.dynamic) {
      m_skipped += nonfinite ? 1 : 0;
      return !nonfinite;
    }
    if (nonfinite) {
      m_clean_steps = 0;
      if (m_hysteresis_left > 0) --m_hysteresis_left;  // at 0 every overflow backs off, as Megatron-LM's does
      if (m_hysteresis_left == 0) m_scale = std::max(m_scale * m_settings.backoff_factor, m_settings.min_scale);
      ++m_skipped;
      return false;
    }
    if (++m_clean_steps >= m_settings.growth_interval) {  // >=: a state resumed under a shorter interval
      m_clean_steps = 0;
      m_hysteresis_left = m_settings.hysteresis;
      m_scale = std::min(m_scale * m_settings.growth_factor, m_settings.max_scale);
    }
    return true;
  }

  std::int64_t skipped_steps() const { return m_skipped; }
  const LossScalerSettings& settings() const { return m_settings; }

  // Its state as text key/values, for a checkpoint's metadata (resumed runs continue the
  // same sequence of scales); the values print doubles exactly.
  std::map<std::string, std::string> state() const {
    return {{"loss_scale", exact(m_scale)},
            {"loss_scale_clean_steps", std::to_string(m_clean_steps)},
            {"loss_scale_hysteresis_left", std::to_string(m_hysteresis_left)},
            {"loss_scale_skipped", std::to_string(m_skipped)}};
  }

  // Takes a state() back. Without dynamic scaling the scale stays the settings' and only the
  // skipped steps are read; a dynamic scale must lie within [min_scale, max_scale] (a run
  // resumed under other bounds is refused rather than clamped silently).
  void load_state(const std::map<std::string, std::string>& state) {
    const char* op = "trident::optim::LossScaler::load_state";
    const auto number = [&](const char* key) {
      require_argument(state.count(key) != 0, op, ": '", key, "' is missing");
      const std::string& text = state.at(key);
      std::size_t used = 0;
      double value = 0;
      try {
        value = std::stod(text, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      require_argument(used == text.size() && used > 0 && std::isfinite(value), op, ": '", key, "' = '", text,
                       "' is not a finite number");
      return value;
    };
    // A count: an integer within `low` and 2^53 (doubles hold every such integer exactly).
    const auto count = [&](const char* key, double low) {
      const double value = number(key);
      require_argument(value == std::floor(value) && value >= low && value <= 9007199254740992.0, op, ": '", key,
                       "' = ", state.at(key), " is not a whole number in [", low, ", 2^53]");
      return value;
    };
    const double scale = number("loss_scale");
    const double clean_steps = count("loss_scale_clean_steps", 0);
    const double hysteresis_left = count("loss_scale_hysteresis_left", 0);
    const double skipped = count("loss_scale_skipped", 0);
    if (m_settings.dynamic)
      require_argument(scale >= m_settings.min_scale && scale <= m_settings.max_scale, op, ": loss_scale ", scale,
                       " lies outside this scaler's [", m_settings.min_scale, ", ", m_settings.max_scale, "]");
    if (m_settings.dynamic) m_scale = scale;
    m_clean_steps = static_cast<std::int64_t>(clean_steps);
    m_hysteresis_left = static_cast<int>(std::min(hysteresis_left, static_cast<double>(m_settings.hysteresis)));
    m_skipped = static_cast<std::int64_t>(skipped);
  }

 private:
  static std::string exact(double value) {
    char text[32];
    std::snprintf(text, sizeof text, "%.17g", value);
    return text;
  }

  LossScalerSettings m_settings;
  double m_scale;
  std::int64_t m_clean_steps = 0;
  int m_hysteresis_left;
  std::int64_t m_skipped = 0;
};

}  // namespace trident::optim
