// The dynamic loss scale against the rule written out step by step: growth after
// growth_interval clean steps, backoff only once hysteresis overflowing steps have been seen
// (the count refilled at each growth), the bounds, the skipped steps, and its state carried
// through a checkpoint's metadata.

#include "trident_test.hpp"

#include <trident/optim/loss_scaler.hpp>

#include <vector>

using trident::optim::LossScaler;
using trident::optim::LossScalerSettings;

namespace {

LossScalerSettings small_settings() {
  LossScalerSettings s;
  s.initial_scale = 1024;
  s.growth_interval = 3;
  s.hysteresis = 2;
  s.min_scale = 256;
  s.max_scale = 4096;
  return s;
}

}  // namespace

TEST_CASE("the loss scale grows after clean runs and backs off after its hysteresis", "[optim][loss_scale]") {
  LossScaler scaler(small_settings());
  // Each entry: whether the step overflowed, whether it may be applied, the scale afterwards.
  struct Step {
    bool overflow, applied;
    double scale;
  };
  const std::vector<Step> steps{
      {false, true, 1024}, {false, true, 1024}, {false, true, 2048},  // 3 clean: grows
      {true, false, 2048},                                            // first overflow: hysteresis 2 -> 1
      {false, true, 2048}, {false, true, 2048},                       // the clean count restarted
      {true, false, 1024},                                            // second overflow: backs off
      {true, false, 512},                                             // hysteresis spent: backs off again
      {false, true, 512},  {false, true, 512},  {false, true, 1024},  // grows; hysteresis refilled
      {true, false, 1024},                                            // tolerated once more
      {true, false, 512},  {true, false, 256},  {true, false, 256},   // floor at min_scale
      {false, true, 256},  {false, true, 256},  {false, true, 512},  {false, true, 512},
      {false, true, 512},  {false, true, 1024}, {false, true, 1024}, {false, true, 1024},
      {false, true, 2048}, {false, true, 2048}, {false, true, 2048}, {false, true, 4096},
      {false, true, 4096}, {false, true, 4096}, {false, true, 4096},  // ceiling at max_scale
  };
  int skipped = 0;
  for (std::size_t k = 0; k < steps.size(); ++k) {
    CAPTURE(k);
    CHECK(scaler.update(steps[k].overflow) == steps[k].applied);
    CHECK(scaler.scale() == steps[k].scale);
    skipped += steps[k].applied ? 0 : 1;
  }
  CHECK(scaler.skipped_steps() == skipped);
  CHECK(scaler.inverse_scale() == 1.0 / 4096);
}

TEST_CASE("without dynamic scaling the scale stays 1 and overflowing steps are still refused", "[optim][loss_scale]") {
  LossScaler scaler(LossScalerSettings::none());
  CHECK(scaler.scale() == 1.0);
  for (int k = 0; k < 5; ++k) CHECK(scaler.update(false));
  CHECK_FALSE(scaler.update(true));
  CHECK(scaler.scale() == 1.0);
}

TEST_CASE("a resumed loss scaler continues the same sequence of scales", "[optim][loss_scale]") {
  LossScaler a(small_settings());
  for (bool overflow : {false, false, false, true, false}) a.update(overflow);
  LossScaler b(small_settings());
  b.load_state(a.state());
  CHECK(b.scale() == a.scale());
  CHECK(b.skipped_steps() == 1);
  for (bool overflow : {false, true, true, false, false, false, false}) {
    CHECK(a.update(overflow) == b.update(overflow));
    CHECK(a.scale() == b.scale());
  }
  // A scale that is not a power of two survives the text exactly.
  LossScalerSettings odd = small_settings();
  odd.backoff_factor = 0.3;
  LossScaler c(odd);
  c.update(true);
  c.update(true);
  LossScaler d(odd);
  d.load_state(c.state());
  CHECK(d.scale() == c.scale());
  CHECK(c.scale() == 1024 * 0.3);
}

TEST_CASE("a loss scaler refuses settings and states that make no sense", "[optim][loss_scale]") {
  auto with = [](auto change) {
    LossScalerSettings s = small_settings();
    change(s);
    return s;
  };
  CHECK_THROWS_WITH(LossScaler(with([](auto& s) { s.growth_factor = 1; })), Catch::Contains("growth_factor"));
  CHECK_THROWS_WITH(LossScaler(with([](auto& s) { s.backoff_factor = 1.5; })), Catch::Contains("backoff_factor"));
  CHECK_THROWS_WITH(LossScaler(with([](auto& s) { s.growth_interval = 0; })), Catch::Contains("growth_interval"));
  CHECK_THROWS_WITH(LossScaler(with([](auto& s) { s.hysteresis = 0; })), Catch::Contains("hysteresis"));
  CHECK_THROWS_WITH(LossScaler(with([](auto& s) { s.initial_scale = 8192; })), Catch::Contains("outside [256, 4096]"));
  CHECK_THROWS_WITH(LossScaler(with([](auto& s) { s.min_scale = 0; })), Catch::Contains("must be positive"));
  LossScaler scaler(small_settings());
  auto state = scaler.state();
  state.erase("loss_scale_hysteresis_left");
  CHECK_THROWS_WITH(scaler.load_state(state), Catch::Contains("'loss_scale_hysteresis_left' is missing"));
  state = scaler.state();
  state["loss_scale"] = "big";
  CHECK_THROWS_WITH(scaler.load_state(state), Catch::Contains("'loss_scale' = 'big' is not a number"));
  state["loss_scale"] = "-2";
  CHECK_THROWS_WITH(scaler.load_state(state), Catch::Contains("cannot be negative"));
  CHECK(scaler.scale() == 1024);  // a refused state changes nothing
}
