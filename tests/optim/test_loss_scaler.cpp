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
  CHECK(scaler.skipped_steps() == 1);
  CHECK_FALSE(scaler.update(true));
  CHECK(scaler.skipped_steps() == 2);
  // A resumed fixed scaler keeps its own scale and takes the count.
  auto state = scaler.state();
  state["loss_scale"] = "1024";
  LossScaler resumed(LossScalerSettings::none());
  resumed.load_state(state);
  CHECK(resumed.scale() == 1.0);
  CHECK(resumed.skipped_steps() == 2);
}

TEST_CASE("a state resumed under a shorter growth interval or hysteresis keeps growing and backing off",
          "[optim][loss_scale]") {
  LossScaler a(small_settings());  // interval 3, hysteresis 2
  a.update(false);
  a.update(false);
  auto state = a.state();
  CHECK(state.at("loss_scale_clean_steps") == "2");
  LossScalerSettings shorter = small_settings();
  shorter.growth_interval = 1;
  shorter.hysteresis = 1;
  LossScaler b(shorter);
  b.load_state(state);
  CHECK(b.update(false));
  CHECK(b.scale() == 2048);  // 2 clean steps already exceed the new interval of 1
  CHECK_FALSE(b.update(true));
  CHECK(b.scale() == 1024);  // hysteresis 2 from the state, cut to the new 1: backs off at once
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
  CHECK_THROWS_WITH(scaler.load_state(state), Catch::Contains("'loss_scale' = 'big' is not a finite number"));
  state["loss_scale"] = "inf";
  CHECK_THROWS_WITH(scaler.load_state(state), Catch::Contains("'loss_scale' = 'inf' is not a finite number"));
  state["loss_scale"] = "-2";
  CHECK_THROWS_WITH(scaler.load_state(state), Catch::Contains("loss_scale -2 lies outside this scaler's [256, 4096]"));
  state["loss_scale"] = "8192";
  CHECK_THROWS_WITH(scaler.load_state(state), Catch::Contains("lies outside this scaler's [256, 4096]"));
  state = scaler.state();
  state["loss_scale_clean_steps"] = "2.5";
  CHECK_THROWS_WITH(scaler.load_state(state),
                    Catch::Contains("'loss_scale_clean_steps' = 2.5 is not a whole number in [0, 2^53]"));
  state = scaler.state();
  state["loss_scale_hysteresis_left"] = "1e300";
  CHECK_THROWS_WITH(scaler.load_state(state), Catch::Contains("'loss_scale_hysteresis_left' = 1e300 is not a whole"));
  state = scaler.state();
  state["loss_scale_skipped"] = "-1";
  CHECK_THROWS_WITH(scaler.load_state(state), Catch::Contains("'loss_scale_skipped' = -1 is not a whole"));
  // A refused state changes nothing: the next steps follow the rule from the start.
  CHECK(scaler.scale() == 1024);
  CHECK(scaler.skipped_steps() == 0);
  CHECK(scaler.update(false));
  CHECK(scaler.update(false));
  CHECK(scaler.update(false));
  CHECK(scaler.scale() == 2048);
  CHECK_FALSE(scaler.update(true));
  CHECK(scaler.scale() == 2048);  // hysteresis 2 intact
}
