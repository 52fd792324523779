// AdamW, the learning-rate schedule and clipping against the torch formulas written out here.

#include "execution_spaces.hpp"
#include "trident_test.hpp"

#include <trident/core/half_precision.hpp>
#include <trident/core/parameter_store.hpp>
#include <trident/optim/adamw.hpp>
#include <trident/optim/clip.hpp>
#include <trident/optim/lr_schedule.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

namespace {

// torch.optim.AdamW, one element, in double.
struct ReferenceAdamW {
  double p, m = 0, v = 0;
  void step(double g, int t, double lr, double b1, double b2, double eps, double wd) {
    p *= 1 - lr * wd;
    m = b1 * m + (1 - b1) * g;
    v = b2 * v + (1 - b2) * g * g;
    const double m_hat = m / (1 - std::pow(b1, t)), v_hat = v / (1 - std::pow(b2, t));
    p -= lr * m_hat / (std::sqrt(v_hat) + eps);
  }
};

}  // namespace

TEMPLATE_LIST_TEST_CASE("AdamW follows torch.optim.AdamW, decaying matrices only", "[optim]",
                        trident_test::ExecutionSpaces) {
  using Space = TestType;
  using Memory = typename Space::memory_space;
  trident::ParameterStore<double, Memory> store;
  store.declare("w", {2, 3}, true);
  store.declare("b", {3}, false);
  store.allocate();
  const int n = static_cast<int>(store.size());
  auto values = Kokkos::create_mirror_view(store.values());
  std::vector<ReferenceAdamW> reference;
  for (int i = 0; i < n; ++i) {
    values(i) = 0.5 - 0.1 * i;
    reference.push_back({values(i)});
  }
  Kokkos::deep_copy(store.values(), values);

  trident::optim::AdamWSettings settings{0.9, 0.95, 1e-8, 0.1};
  trident::optim::AdamW<double, Memory> adamw(store, settings);
  auto grads = Kokkos::create_mirror_view(store.grads());
  for (int t = 1; t <= 5; ++t) {
    const double lr = 1e-2 * t;
    for (int i = 0; i < n; ++i) {
      grads(i) = std::sin(1.0 + i * t) * (i % 3 == 0 ? 1e-3 : 1.0);
      reference[static_cast<std::size_t>(i)].step(grads(i), t, lr, 0.9, 0.95, 1e-8, i < 6 ? 0.1 : 0.0);
    }
    Kokkos::deep_copy(store.grads(), grads);
    adamw.step(Space(), store, t, lr);
  }
  Kokkos::deep_copy(values, store.values());
  for (int i = 0; i < n; ++i) CHECK(std::abs(values(i) - reference[static_cast<std::size_t>(i)].p) < 1e-14);
}

TEMPLATE_LIST_TEST_CASE("the first AdamW step moves each parameter by about lr", "[optim]",
                        trident_test::ExecutionSpaces) {
  using Space = TestType;
  using Memory = typename Space::memory_space;
  // With bias correction the first update is lr * g/|g| (up to eps), whatever the scale of g.
  Kokkos::View<float*, Memory> p("p", 2), g("g", 2), m("m", 2), v("v", 2);
  auto hg = Kokkos::create_mirror_view(g);
  hg(0) = 1e-4f;
  hg(1) = -30.0f;
  Kokkos::deep_copy(g, hg);
  trident::optim::adamw_update(Space(), p, g, m, v, {0.9, 0.95, 1e-8, 0.0}, 1, 0.5, false);
  auto hp = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), p);
  CHECK(std::abs(hp(0) + 0.5f) < 1e-4f);
  CHECK(std::abs(hp(1) - 0.5f) < 1e-6f);
  CHECK_THROWS_AS(trident::optim::adamw_update(Space(), p, g, m, v, {}, 0, 0.5, false), trident::InvalidArgument);
}

TEMPLATE_LIST_TEST_CASE("AdamW in one launch over chunks equals AdamW tensor by tensor, bitwise", "[optim]",
                        trident_test::ExecutionSpaces) {
  using Space = TestType;
  using Memory = typename Space::memory_space;
  // Runs longer than a chunk (16,384), neighbours of the same decay merged, and a range that
  // starts and ends inside tensors.
  trident::ParameterStore<float, Memory> store;
  store.declare("a", {100, 200}, true);  // 20,000: two chunks
  store.declare("b", {7}, false);
  store.declare("c", {10}, false);       // merged with b
  store.declare("d", {256, 128}, true);  // 32,768: two full chunks
  store.declare("e", {50}, true);        // merged with d: a third chunk of 50
  store.allocate();
  const auto n = store.size();
  const trident::optim::AdamWChunks<Memory> whole(store.tensors(), 0, n);
  const auto table = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), whole.table());
  const std::vector<std::array<std::int64_t, 3>> expected{{0, 16384, 1},     {16384, 20000, 1}, {20000, 20017, 0},
                                                          {20017, 36401, 1}, {36401, 52785, 1}, {52785, 52835, 1}};
  REQUIRE(whole.count() == static_cast<std::int64_t>(expected.size()));
  for (std::size_t c = 0; c < expected.size(); ++c)
    for (int j = 0; j < 3; ++j) CHECK(table(c, j) == expected[c][static_cast<std::size_t>(j)]);
  const trident::optim::AdamWChunks<Memory> part(store.tensors(), 19990, 20030);  // end of a, b, c, start of d
  CHECK(part.count() == 3);
  CHECK(part.elements() == 40);

  Kokkos::View<float*, Memory> p0("p0", n), g("g", n);
  auto hp = Kokkos::create_mirror_view(p0);
  auto hg = Kokkos::create_mirror_view(g);
  for (std::int64_t i = 0; i < n; ++i) {
    hp(i) = 0.01f * static_cast<float>(i % 97) - 0.4f;
    hg(i) = 0.003f * static_cast<float>(i % 89) - 0.1f;
  }
  Kokkos::deep_copy(p0, hp);
  Kokkos::deep_copy(g, hg);
  const trident::optim::AdamWSettings settings{0.9, 0.95, 1e-8, 0.1};
  Kokkos::View<float*, Memory> p1("p1", n), m1("m1", n), v1("v1", n), p2("p2", n), m2("m2", n), v2("v2", n);
  Kokkos::deep_copy(p1, p0);
  Kokkos::deep_copy(p2, p0);
  for (int t = 1; t <= 3; ++t) {
    for (const auto& info : store.tensors()) {
      const auto r = std::make_pair(info.offset, info.offset + info.size());
      trident::optim::adamw_update(Space(), Kokkos::subview(p1, r), Kokkos::subview(g, r), Kokkos::subview(m1, r),
                                   Kokkos::subview(v1, r), settings, t, 1e-2, info.weight_decay);
    }
    trident::optim::adamw_update(Space(), p2, g, m2, v2, whole, settings, t, 1e-2);
  }
  const auto a = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), p1);
  const auto b = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), p2);
  const auto va = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), v1);
  const auto vb = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), v2);
  std::int64_t differ = 0, moved = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    differ += (a(i) != b(i) || va(i) != vb(i)) ? 1 : 0;
    moved += a(i) != hp(i) ? 1 : 0;
  }
  CHECK(differ == 0);
  CHECK(moved == n);

  // The part's chunks on views of its range only; a view of another length is refused.
  Kokkos::View<float*, Memory> p3("p3", 40), m3("m3", 40), v3("v3", 40);
  const auto r = std::make_pair(std::int64_t{19990}, std::int64_t{20030});
  Kokkos::deep_copy(p3, Kokkos::subview(p0, r));
  trident::optim::adamw_update(Space(), p3, Kokkos::subview(g, r), m3, v3, part, settings, 1, 1e-2);
  Kokkos::View<float*, Memory> p4("p4", 40), m4("m4", 40), v4("v4", 40);
  Kokkos::deep_copy(p4, Kokkos::subview(p0, r));
  for (const auto& info : store.tensors()) {
    const std::int64_t lo = std::max<std::int64_t>(r.first, info.offset) - r.first;
    const std::int64_t hi = std::min<std::int64_t>(r.second, info.offset + info.size()) - r.first;
    if (lo >= hi) continue;
    const auto q = std::make_pair(lo, hi);
    trident::optim::adamw_update(Space(), Kokkos::subview(p4, q), Kokkos::subview(Kokkos::subview(g, r), q),
                                 Kokkos::subview(m4, q), Kokkos::subview(v4, q), settings, 1, 1e-2, info.weight_decay);
  }
  const auto c = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), p3);
  const auto d = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), p4);
  for (std::int64_t i = 0; i < 40; ++i) CHECK(c(i) == d(i));
  CHECK_THROWS_WITH(trident::optim::adamw_update(Space(), p2, g, m2, v2, part, settings, 1, 1e-2),
                    Catch::Contains("the chunks cover 40 elements but the parameters have 52835"));
}

TEMPLATE_LIST_TEST_CASE("AdamW on float master weights from 16-bit gradients writes the model's 16-bit copy",
                        "[optim][half]", trident_test::ExecutionSpaces) {
  using Space = TestType;
  using Memory = typename Space::memory_space;
  using trident::bfloat16;
  trident::ParameterStore<float, Memory> store;
  store.declare("w", {130, 150}, true);  // 19,500: two chunks
  store.declare("b", {150}, false);
  store.allocate();
  const auto n = store.size();
  const trident::optim::AdamWChunks<Memory> chunks(store.tensors(), 0, n);
  // The gradients as the model computed them, in bfloat16, and the same values in float.
  Kokkos::View<float*, Memory> master("master", n), reference("reference", n), g("g", n);
  Kokkos::View<bfloat16*, Memory> g16("g16", n), copy("copy", n);
  auto hp = Kokkos::create_mirror_view(master);
  auto hg = Kokkos::create_mirror_view(g);
  auto hg16 = Kokkos::create_mirror_view(g16);
  for (std::int64_t i = 0; i < n; ++i) {
    hp(i) = 0.0137f * static_cast<float>(i % 101) - 0.6f;
    hg16(i) = bfloat16(0.00731f * static_cast<float>(i % 83) - 0.3f);
    hg(i) = static_cast<float>(hg16(i));
  }
  Kokkos::deep_copy(master, hp);
  Kokkos::deep_copy(reference, hp);
  Kokkos::deep_copy(g, hg);
  Kokkos::deep_copy(g16, hg16);
  const trident::optim::AdamWSettings settings{0.9, 0.95, 1e-8, 0.1};
  Kokkos::View<float*, Memory> m1("m1", n), v1("v1", n), m2("m2", n), v2("v2", n);
  for (int t = 1; t <= 3; ++t) {
    trident::optim::adamw_update(Space(), reference, g, m1, v1, chunks, settings, t, 1e-3);
    trident::optim::adamw_update(Space(), master, g16, m2, v2, chunks, settings, t, 1e-3, copy);
  }
  // The master is float AdamW's result bit for bit; the copy is the master rounded once, and
  // the master keeps what bfloat16 cannot hold (steps of 1e-3 are near its spacing here).
  const auto r = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), reference);
  const auto mm = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), master);
  const auto c = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), copy);
  std::int64_t master_differs = 0, copy_differs = 0, copy_lags = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    master_differs += trident::detail::bits_of(mm(i)) != trident::detail::bits_of(r(i)) ? 1 : 0;
    copy_differs += c(i).bits != bfloat16(r(i)).bits ? 1 : 0;
    copy_lags += static_cast<float>(c(i)) != r(i) ? 1 : 0;
  }
  CHECK(master_differs == 0);
  CHECK(copy_differs == 0);
  CHECK(copy_lags > n / 2);
  Kokkos::View<bfloat16*, Memory> short_copy("short", n - 1);
  CHECK_THROWS_WITH(trident::optim::adamw_update(Space(), master, g16, m2, v2, chunks, settings, 4, 1e-3, short_copy),
                    Catch::Contains("the model's copy of the parameters has 19649"));
}

TEST_CASE("the cosine schedule warms up linearly and decays to its floor", "[optim]") {
  trident::optim::CosineSchedule no_warmup{6e-4, 0, 100, 0.1};
  CHECK(no_warmup(1) == 6e-4);  // exactly --lr on the first step
  CHECK(std::abs(no_warmup(100) - 6e-5) < 1e-18);
  CHECK(std::abs(no_warmup(50) - (6e-5 + 0.5 * (1 + std::cos(M_PI * 49.0 / 99.0)) * 5.4e-4)) < 1e-15);

  trident::optim::CosineSchedule warm{1e-3, 10, 110, 0.0};
  CHECK(warm(1) == 1e-4);
  CHECK(std::abs(warm(5) - 5e-4) < 1e-18);
  CHECK(warm(10) == 1e-3);
  CHECK(warm(11) == 1e-3);
  CHECK(std::abs(warm(110)) < 1e-18);
  for (int s = 11; s < 110; ++s) CHECK(warm(s + 1) <= warm(s));
}

TEMPLATE_LIST_TEST_CASE("clip_grad_norm_ semantics", "[optim]", trident_test::ExecutionSpaces) {
  using Space = TestType;
  using Memory = typename Space::memory_space;
  Kokkos::View<double*, Memory> g("g", 4);
  auto hg = Kokkos::create_mirror_view(g);
  hg(0) = 3;
  hg(1) = 4;
  hg(2) = 0;
  hg(3) = 12;
  Kokkos::deep_copy(g, hg);
  const double norm = std::sqrt(trident::optim::sum_of_squares(Space(), g));
  CHECK(norm == 13.0);
  const double coef = trident::optim::clip_coefficient(norm, 1.0);
  CHECK(coef == 1.0 / (13.0 + 1e-6));
  trident::optim::scale_in_place(Space(), g, coef);
  Kokkos::deep_copy(hg, g);
  CHECK(std::abs(hg(3) - 12.0 / (13.0 + 1e-6)) < 1e-15);
  CHECK(trident::optim::clip_coefficient(0.5, 1.0) == 1.0);
}

TEMPLATE_LIST_TEST_CASE("the sum of squares over ranges, in one pass of chunks", "[optim]",
                        trident_test::ExecutionSpaces) {
  using Space = TestType;
  using Memory = typename Space::memory_space;
  // More than two chunks of 16384, so ranges start and end inside chunks and across them.
  const std::int64_t n = 40000;
  Kokkos::View<float*, Memory> g("g", n);
  auto hg = Kokkos::create_mirror_view(g);
  for (std::int64_t i = 0; i < n; ++i) hg(i) = static_cast<float>(std::sin(0.37 * static_cast<double>(i)));
  Kokkos::deep_copy(g, hg);
  const auto reference = [&](std::int64_t begin, std::int64_t end) {
    double total = 0;
    for (std::int64_t i = begin; i < end; ++i) total += static_cast<double>(hg(i)) * static_cast<double>(hg(i));
    return total;
  };
  const double all = trident::optim::sum_of_squares(Space(), g);
  CHECK(all == Approx(reference(0, n)).epsilon(1e-13));
  CHECK(trident::optim::sum_of_squares(Space(), g, {{0, n}}) == all);  // the same chunks, the same sum
  const double some = trident::optim::sum_of_squares(Space(), g, {{3, 17000}, {20000, 20001}, {32767, 39999}});
  CHECK(some == Approx(reference(3, 17000) + reference(20000, 20001) + reference(32767, 39999)).epsilon(1e-13));
  CHECK(trident::optim::sum_of_squares(Space(), g, {{5, 5}}) == 0.0);
  CHECK_THROWS_WITH(trident::optim::sum_of_squares(Space(), g, {{10, 40001}}),
                    "trident::optim::sum_of_squares: the range [10, 40001) is not inside the view's 40000 elements");
}
