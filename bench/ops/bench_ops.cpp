// Operator benchmark at GPT-2 training shapes, one rank. Prints JSON lines:
//   {"bench":"sgemm", ...}       KokkosBlas::gemm on every GEMM shape of the training step,
//                                and whether float gemm reached the BLAS library
//   {"bench":"op", ...}          forward + backward time of each operator, its GFLOP/s
//   {"bench":"row_policy", ...}  row-wise kernels as a loop over rows against one team per row
//   {"bench":"step", ...}        a full GPT-2 training step composed of the operators (zero the
//                                gradients, forward, backward; no optimizer), its model FLOP/s
//                                (6 N + 12 L C T per token, N counting the tied head once) and
//                                its fraction of the SGEMM rate, each step run paired with a run
//                                of the step's GEMMs (median, min and max of the ratios)
// Run with OPENBLAS_NUM_THREADS=1 (and OMP_NUM_THREADS=1) for the single-thread numbers.
//
// Options: --batch B --seq T --channels C --heads H --layers L --vocab V --repeats R

#include <trident/core/random.hpp>
#include <trident/ops/ops.hpp>

#include "json_line.hpp"

#include <KokkosBlas3_gemm.hpp>
#include <Kokkos_Core.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <set>
#include <string>
#include <vector>

namespace {

using Space = Kokkos::DefaultExecutionSpace;
using Memory = Space::memory_space;
using Scalar = float;
using Matrix = Kokkos::View<Scalar**, Kokkos::LayoutRight, Memory>;
using Vector = Kokkos::View<Scalar*, Kokkos::LayoutRight, Memory>;
using Tokens = Kokkos::View<int*, Kokkos::LayoutRight, Memory>;
using Buffers = trident::ops::AttentionBuffers<Scalar, Memory>;

struct Shape {
  int B = 8, T = 256, C = 256, H = 4, L = 4, V = 4096, repeats = 5;
  int N() const { return B * T; }
};

Shape parse(int argc, char* argv[]) {
  Shape s;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string key = argv[i];
    const int value = std::atoi(argv[i + 1]);
    if (key == "--batch")
      s.B = value;
    else if (key == "--seq")
      s.T = value;
    else if (key == "--channels")
      s.C = value;
    else if (key == "--heads")
      s.H = value;
    else if (key == "--layers")
      s.L = value;
    else if (key == "--vocab")
      s.V = value;
    else if (key == "--repeats")
      s.repeats = value;
  }
  return s;
}

std::set<std::string>& regions_seen() {
  static std::set<std::string> seen;
  return seen;
}
void record_region(const char* name) {
  regions_seen().insert(name);
}

std::uint64_t next_seed = 1;
Matrix random_matrix(const std::string& name, int rows, int cols, double scale = 0.02) {
  Matrix m(name, rows, cols);
  trident::fill_normal(Space(), m, trident::random_stream(next_seed++, name), 0.0, scale);
  return m;
}
Vector random_vector(const std::string& name, int length, double mean = 0.0, double scale = 0.02) {
  Vector v(name, length);
  trident::fill_normal(Space(), v, trident::random_stream(next_seed++, name), mean, scale);
  return v;
}

// Runs `body` `repeats` times after one warm-up; returns the median and the best time in seconds.
struct Timing {
  double median, best;
};
Timing time_it(int repeats, const std::function<void()>& body) {
  body();
  Kokkos::fence();
  std::vector<double> times;
  for (int r = 0; r < repeats; ++r) {
    Kokkos::Timer timer;
    body();
    Kokkos::fence();
    times.push_back(timer.seconds());
  }
  std::sort(times.begin(), times.end());
  return {times[times.size() / 2], times.front()};
}

// One GEMM of the training step: C[m, n] = op(A) op(B), with A, B, C as the step lays them out.
struct GemmShape {
  const char* name;
  char ta, tb;
  int m, n, k, count;  // count: how many such GEMMs one step runs
  double flops() const { return 2.0 * m * n * k * count; }
};

std::vector<GemmShape> step_gemms(const Shape& s) {
  const int N = s.N(), C = s.C, V = s.V, T = s.T, hd = s.C / s.H, L = s.L, bh = s.B * s.H;
  return {
      {"c_attn fwd", 'N', 'N', N, 3 * C, C, L},
      {"c_attn bwd dinp", 'N', 'T', N, C, 3 * C, L},
      {"c_attn bwd dweight", 'T', 'N', C, 3 * C, N, L},
      {"c_proj fwd", 'N', 'N', N, C, C, L},
      {"c_proj bwd dinp", 'N', 'T', N, C, C, L},
      {"c_proj bwd dweight", 'T', 'N', C, C, N, L},
      {"fc fwd", 'N', 'N', N, 4 * C, C, L},
      {"fc bwd dinp", 'N', 'T', N, C, 4 * C, L},
      {"fc bwd dweight", 'T', 'N', C, 4 * C, N, L},
      {"fc_proj fwd", 'N', 'N', N, C, 4 * C, L},
      {"fc_proj bwd dinp", 'N', 'T', N, 4 * C, C, L},
      {"fc_proj bwd dweight", 'T', 'N', 4 * C, C, N, L},
      {"head fwd", 'N', 'T', N, V, C, 1},
      {"head bwd dinp", 'N', 'N', N, C, V, 1},
      {"head bwd dweight", 'T', 'N', V, C, N, 1},
      {"attn QK^T", 'N', 'T', T, T, hd, L * bh},
      {"attn PV", 'N', 'N', T, hd, T, L * bh},
      {"attn dV=P^T dY", 'T', 'N', T, hd, T, L * bh},
      {"attn dP=dY V^T", 'N', 'T', T, T, hd, L * bh},
      {"attn dQ=dS K", 'N', 'N', T, hd, T, L * bh},
      {"attn dK=dS^T Q", 'T', 'N', T, hd, T, L * bh},
  };
}

// Times KokkosBlas::gemm directly on one shape: seconds per call, median and best.
Timing time_gemm(const GemmShape& g, int repeats) {
  const int a_rows = g.ta == 'N' ? g.m : g.k, a_cols = g.ta == 'N' ? g.k : g.m;
  const int b_rows = g.tb == 'N' ? g.k : g.n, b_cols = g.tb == 'N' ? g.n : g.k;
  const Matrix a = random_matrix("a", a_rows, a_cols), b = random_matrix("b", b_rows, b_cols);
  const Matrix c("c", g.m, g.n);
  const char ta[2] = {g.ta, 0}, tb[2] = {g.tb, 0};
  const int calls = std::max(1, std::min(g.count, 64));
  const Timing t = time_it(repeats, [&]() {
    for (int i = 0; i < calls; ++i) KokkosBlas::gemm(ta, tb, 1.0f, a, b, 0.0f, c);
  });
  return {t.median / calls, t.best / calls};
}

// Every GEMM of one training step, as many times as the step runs it, on its own operands.
struct ReferenceGemms {
  struct Operands {
    GemmShape shape;
    Matrix a, b, c;
  };
  std::vector<Operands> operands;
  double flops = 0;

  explicit ReferenceGemms(const std::vector<GemmShape>& shapes) {
    for (const GemmShape& g : shapes) {
      const int a_rows = g.ta == 'N' ? g.m : g.k, a_cols = g.ta == 'N' ? g.k : g.m;
      const int b_rows = g.tb == 'N' ? g.k : g.n, b_cols = g.tb == 'N' ? g.n : g.k;
      operands.push_back(
          {g, random_matrix("a", a_rows, a_cols), random_matrix("b", b_rows, b_cols), Matrix("c", g.m, g.n)});
      flops += g.flops();
    }
  }
  void run() const {
    for (const Operands& o : operands) {
      const char ta[2] = {o.shape.ta, 0}, tb[2] = {o.shape.tb, 0};
      for (int i = 0; i < o.shape.count; ++i) KokkosBlas::gemm(ta, tb, 1.0f, o.a, o.b, 0.0f, o.c);
    }
  }
};

void print_op(const char* name, const Timing& fwd, const Timing& bwd, double flops, double sgemm_gflops) {
  const double total = fwd.median + bwd.median;
  const double gflops = flops > 0 ? flops / total * 1e-9 : 0.0;
  trident_bench::print_json<Space>(
      "{\"bench\":\"op\",\"op\":\"%s\",\"fwd_ms\":%.3f,\"bwd_ms\":%.3f,\"fwd_best_ms\":%.3f,\"bwd_best_ms\":%.3f,"
      "\"gflop\":%.4f,\"gflops\":%.2f,\"fraction_of_sgemm\":%.3f}\n",
      name, fwd.median * 1e3, bwd.median * 1e3, fwd.best * 1e3, bwd.best * 1e3, flops * 1e-9, gflops,
      sgemm_gflops > 0 ? gflops / sgemm_gflops : 0.0);
  std::fflush(stdout);
}

template <class Body>
void compare_row_policies(const char* name, int repeats, int rows, const Body& body) {
  namespace detail = trident::ops::detail;
  const Timing range = time_it(repeats, [&]() {
    Kokkos::parallel_for("bench::rows", detail::IndexRange<Space>(0, rows), detail::SequentialRows<Body>{body});
  });
  using Policy = Kokkos::TeamPolicy<Space>;
  const Timing team = time_it(repeats, [&]() {
    Kokkos::parallel_for("bench::teams", Policy(rows, Kokkos::AUTO), detail::TeamRows<Body, Policy::member_type>{body});
  });
  trident_bench::print_json<Space>(
      "{\"bench\":\"row_policy\",\"kernel\":\"%s\",\"range_over_rows_ms\":%.3f,\"team_per_row_ms\":%.3f}\n", name,
      range.median * 1e3, team.median * 1e3);
  std::fflush(stdout);
}

// The parameters, activations and gradients of a GPT-2 one-rank training step.
struct Layer {
  Vector ln1_w, ln1_b, attn_b, proj_b, ln2_w, ln2_b, fc_b, fcproj_b;
  Matrix attn_w, proj_w, fc_w, fcproj_w;
  Vector d_ln1_w, d_ln1_b, d_attn_b, d_proj_b, d_ln2_w, d_ln2_b, d_fc_b, d_fcproj_b;
  Matrix d_attn_w, d_proj_w, d_fc_w, d_fcproj_w;
  // activations
  Matrix ln1, qkv, atty, residual2, ln2, fch, fch_gelu, residual3;
  Vector ln1_mean, ln1_rstd, ln2_mean, ln2_rstd;
  Buffers attention;
};

struct Gpt2Step {
  Shape s;
  Matrix wte, wpe, d_wte, d_wpe;
  Vector lnf_w, lnf_b, d_lnf_w, d_lnf_b;
  std::vector<Layer> layers;
  Matrix encoded, lnf, logits;
  Vector lnf_mean, lnf_rstd, losses;
  Tokens tokens, targets;
  // backward scratch
  Matrix dresidual, dln, datty, dqkv, dfch, dfch_gelu, dlnf;

  explicit Gpt2Step(const Shape& shape) : s(shape) {
    const int N = s.N(), C = s.C, V = s.V, T = s.T;
    wte = random_matrix("wte", V, C);
    wpe = random_matrix("wpe", T, C, 0.01);
    d_wte = Matrix("d_wte", V, C);
    d_wpe = Matrix("d_wpe", T, C);
    lnf_w = random_vector("lnf_w", C, 1.0);
    lnf_b = random_vector("lnf_b", C);
    d_lnf_w = Vector("d_lnf_w", C);
    d_lnf_b = Vector("d_lnf_b", C);
    for (int l = 0; l < s.L; ++l) {
      Layer y;
      y.ln1_w = random_vector("ln1_w", C, 1.0);
      y.ln1_b = random_vector("ln1_b", C);
      y.attn_w = random_matrix("attn_w", C, 3 * C);
      y.attn_b = random_vector("attn_b", 3 * C);
      y.proj_w = random_matrix("proj_w", C, C);
      y.proj_b = random_vector("proj_b", C);
      y.ln2_w = random_vector("ln2_w", C, 1.0);
      y.ln2_b = random_vector("ln2_b", C);
      y.fc_w = random_matrix("fc_w", C, 4 * C);
      y.fc_b = random_vector("fc_b", 4 * C);
      y.fcproj_w = random_matrix("fcproj_w", 4 * C, C);
      y.fcproj_b = random_vector("fcproj_b", C);
      y.d_ln1_w = Vector("d", C);
      y.d_ln1_b = Vector("d", C);
      y.d_attn_w = Matrix("d", C, 3 * C);
      y.d_attn_b = Vector("d", 3 * C);
      y.d_proj_w = Matrix("d", C, C);
      y.d_proj_b = Vector("d", C);
      y.d_ln2_w = Vector("d", C);
      y.d_ln2_b = Vector("d", C);
      y.d_fc_w = Matrix("d", C, 4 * C);
      y.d_fc_b = Vector("d", 4 * C);
      y.d_fcproj_w = Matrix("d", 4 * C, C);
      y.d_fcproj_b = Vector("d", C);
      y.ln1 = Matrix("ln1", N, C);
      y.qkv = Matrix("qkv", N, 3 * C);
      y.atty = Matrix("atty", N, C);
      y.residual2 = Matrix("residual2", N, C);
      y.ln2 = Matrix("ln2", N, C);
      y.fch = Matrix("fch", N, 4 * C);
      y.fch_gelu = Matrix("fch_gelu", N, 4 * C);
      y.residual3 = Matrix("residual3", N, C);
      y.ln1_mean = Vector("m", N);
      y.ln1_rstd = Vector("r", N);
      y.ln2_mean = Vector("m", N);
      y.ln2_rstd = Vector("r", N);
      y.attention = l == 0 ? Buffers(s.B, s.T, s.H, C / s.H) : Buffers::sharing_scratch_with(layers[0].attention);
      layers.push_back(y);
    }
    encoded = Matrix("encoded", N, C);
    lnf = Matrix("lnf", N, C);
    logits = Matrix("logits", N, V);
    lnf_mean = Vector("m", N);
    lnf_rstd = Vector("r", N);
    losses = Vector("losses", N);
    tokens = Tokens("tokens", N);
    targets = Tokens("targets", N);
    auto ht = Kokkos::create_mirror_view(tokens);
    auto hg = Kokkos::create_mirror_view(targets);
    for (int n = 0; n < N; ++n) {
      ht(n) = static_cast<int>((n * 2654435761u) % static_cast<unsigned>(V));
      hg(n) = static_cast<int>((n * 40503u + 7) % static_cast<unsigned>(V));
    }
    Kokkos::deep_copy(tokens, ht);
    Kokkos::deep_copy(targets, hg);
    dresidual = Matrix("dresidual", N, C);
    dln = Matrix("dln", N, C);
    datty = Matrix("datty", N, C);
    dqkv = Matrix("dqkv", N, 3 * C);
    dfch = Matrix("dfch", N, 4 * C);
    dfch_gelu = Matrix("dfch_gelu", N, 4 * C);
    dlnf = Matrix("dlnf", N, C);
  }

  // Parameters (the tied head counted once, as wte), for the model FLOPs.
  double parameters_without_wpe() const {
    const double C = s.C;
    return s.L * (12 * C * C + 13 * C) + 2 * C + static_cast<double>(s.V) * C;
  }

  double forward() {
    namespace ops = trident::ops;
    const Space space;
    const int B = s.B, T = s.T, H = s.H;
    ops::embedding_forward(space, encoded, tokens, wte, wpe, T);
    Matrix residual = encoded;
    for (auto& y : layers) {
      ops::layernorm_forward(space, y.ln1, y.ln1_mean, y.ln1_rstd, residual, y.ln1_w, y.ln1_b);
      ops::linear_forward(space, y.qkv, y.ln1, y.attn_w, y.attn_b);
      ops::attention_forward(space, y.atty, y.attention, y.qkv, B, T, H);
      ops::linear_forward(space, y.residual2, y.atty, y.proj_w, y.proj_b);
      ops::add_inplace(space, y.residual2, residual);
      ops::layernorm_forward(space, y.ln2, y.ln2_mean, y.ln2_rstd, y.residual2, y.ln2_w, y.ln2_b);
      ops::linear_forward(space, y.fch, y.ln2, y.fc_w, y.fc_b);
      ops::gelu_forward(space, y.fch_gelu, y.fch);
      ops::linear_forward(space, y.residual3, y.fch_gelu, y.fcproj_w, y.fcproj_b);
      ops::add_inplace(space, y.residual3, y.residual2);
      residual = y.residual3;
    }
    ops::layernorm_forward(space, lnf, lnf_mean, lnf_rstd, residual, lnf_w, lnf_b);
    ops::linear_transposed_forward(space, logits, lnf, wte);
    ops::cross_entropy_forward(space, losses, logits, targets);
    return ops::mean(space, losses);
  }

  void zero_gradients() {
    for (auto& y : layers) {
      for (auto* v :
           {&y.d_ln1_w, &y.d_ln1_b, &y.d_attn_b, &y.d_proj_b, &y.d_ln2_w, &y.d_ln2_b, &y.d_fc_b, &y.d_fcproj_b})
        Kokkos::deep_copy(*v, 0.0f);
      for (auto* m : {&y.d_attn_w, &y.d_proj_w, &y.d_fc_w, &y.d_fcproj_w}) Kokkos::deep_copy(*m, 0.0f);
    }
    for (auto* m : {&d_wte, &d_wpe}) Kokkos::deep_copy(*m, 0.0f);
    for (auto* v : {&d_lnf_w, &d_lnf_b}) Kokkos::deep_copy(*v, 0.0f);
  }

  void backward() {
    namespace ops = trident::ops;
    const Space space;
    const int B = s.B, T = s.T, H = s.H;
    ops::cross_entropy_backward(space, logits, logits, targets, 1.0f / static_cast<float>(s.N()));
    ops::linear_transposed_backward(space, dlnf, d_wte, logits, lnf, wte);
    const Matrix last = layers.back().residual3;
    ops::layernorm_backward(space, dresidual, d_lnf_w, d_lnf_b, dlnf, last, lnf_w, lnf_mean, lnf_rstd);
    for (int l = s.L - 1; l >= 0; --l) {
      Layer& y = layers[l];
      const Matrix residual = l == 0 ? encoded : layers[l - 1].residual3;
      ops::linear_backward(space, dfch_gelu, y.d_fcproj_w, y.d_fcproj_b, dresidual, y.fch_gelu, y.fcproj_w);
      ops::gelu_backward(space, dfch, y.fch, dfch_gelu);
      ops::linear_backward(space, dln, y.d_fc_w, y.d_fc_b, dfch, y.ln2, y.fc_w);
      ops::layernorm_backward(space, dresidual, y.d_ln2_w, y.d_ln2_b, dln, y.residual2, y.ln2_w, y.ln2_mean, y.ln2_rstd,
                              true);
      ops::linear_backward(space, datty, y.d_proj_w, y.d_proj_b, dresidual, y.atty, y.proj_w);
      ops::attention_backward(space, dqkv, datty, y.attention, y.qkv, y.atty, B, T, H);
      ops::linear_backward(space, dln, y.d_attn_w, y.d_attn_b, dqkv, y.ln1, y.attn_w);
      ops::layernorm_backward(space, dresidual, y.d_ln1_w, y.d_ln1_b, dln, residual, y.ln1_w, y.ln1_mean, y.ln1_rstd,
                              true);
    }
    ops::embedding_backward(space, d_wte, d_wpe, dresidual, tokens, T);
  }
};

}  // namespace

int main(int argc, char* argv[]) {
  Kokkos::initialize(argc, argv);
  {
    const Shape s = parse(argc, argv);
    const int N = s.N(), C = s.C, V = s.V, T = s.T, H = s.H, B = s.B;
    const char* threads = std::getenv("OPENBLAS_NUM_THREADS");
    trident_bench::print_json<Space>(
        "{\"bench\":\"config\",\"B\":%d,\"T\":%d,\"C\":%d,\"H\":%d,\"L\":%d,\"V\":%d,\"repeats\":%d,"
        "\"execution_space\":\"%s\",\"kokkos_version\":%d,\"OPENBLAS_NUM_THREADS\":\"%s\"}\n",
        B, T, C, H, s.L, V, s.repeats, Space::name(), KOKKOS_VERSION, threads ? threads : "unset");

    // SGEMM through KokkosBlas::gemm on the step's shapes; also check where float gemm goes.
    Kokkos::Tools::Experimental::set_push_region_callback(record_region);
    double gemm_flops = 0, gemm_seconds = 0, gemm_seconds_best = 0;
    for (const GemmShape& g : step_gemms(s)) {
      const Timing t = time_gemm(g, s.repeats);
      gemm_flops += g.flops();
      gemm_seconds += t.median * g.count;
      gemm_seconds_best += t.best * g.count;
      trident_bench::print_json<Space>(
          "{\"bench\":\"sgemm\",\"gemm\":\"%s\",\"trans\":\"%c%c\",\"m\":%d,\"n\":%d,\"k\":%d,\"count\":%d,"
          "\"ms\":%.4f,\"gflops\":%.2f,\"gflops_best\":%.2f}\n",
          g.name, g.ta, g.tb, g.m, g.n, g.k, g.count, t.median * 1e3, 2.0 * g.m * g.n * g.k / t.median * 1e-9,
          2.0 * g.m * g.n * g.k / t.best * 1e-9);
    }
    Kokkos::Tools::Experimental::set_push_region_callback(nullptr);
    const double sgemm_gflops = gemm_flops / gemm_seconds * 1e-9;
    const double sgemm_gflops_best = gemm_flops / gemm_seconds_best * 1e-9;
    std::string regions;
    for (const auto& r : regions_seen()) regions += (regions.empty() ? "\"" : ",\"") + r + "\"";
    const bool reached_blas = regions_seen().count("KokkosBlas::gemm[TPL_BLAS,float]") > 0;
    trident_bench::print_json<Space>(
        "{\"bench\":\"sgemm_summary\",\"step_gemm_gflop\":%.3f,\"sgemm_gflops\":%.2f,\"sgemm_gflops_best\":%.2f,"
        "\"float_gemm_reaches_blas\":%s,\"regions\":[%s]}\n",
        gemm_flops * 1e-9, sgemm_gflops, sgemm_gflops_best, reached_blas ? "true" : "false", regions.c_str());
    std::fflush(stdout);

    namespace ops = trident::ops;
    const Space space;
    // Linear layers of a block and the head.
    struct LinearCase {
      const char* name;
      int in, out;
    };
    for (const LinearCase& lc : {LinearCase{"linear c_attn", C, 3 * C}, LinearCase{"linear c_proj", C, C},
                                 LinearCase{"linear fc", C, 4 * C}, LinearCase{"linear fc_proj", 4 * C, C}}) {
      const Matrix x = random_matrix("x", N, lc.in), w = random_matrix("w", lc.in, lc.out), y("y", N, lc.out);
      const Matrix dy = random_matrix("dy", N, lc.out), dx("dx", N, lc.in), dw("dw", lc.in, lc.out);
      const Vector b = random_vector("b", lc.out), db("db", lc.out);
      const Timing f = time_it(s.repeats, [&]() { ops::linear_forward(space, y, x, w, b); });
      const Timing g = time_it(s.repeats, [&]() { ops::linear_backward(space, dx, dw, db, dy, x, w); });
      print_op(lc.name, f, g, 6.0 * N * lc.in * lc.out, sgemm_gflops);
    }
    {
      const Matrix x = random_matrix("x", N, C), w = random_matrix("w", V, C), y("y", N, V);
      const Matrix dy = random_matrix("dy", N, V), dx("dx", N, C), dw("dw", V, C);
      const Timing f = time_it(s.repeats, [&]() { ops::linear_transposed_forward(space, y, x, w); });
      const Timing g = time_it(s.repeats, [&]() { ops::linear_transposed_backward(space, dx, dw, dy, x, w); });
      print_op("linear_transposed head", f, g, 6.0 * N * C * V, sgemm_gflops);
    }
    {
      const Matrix qkv = random_matrix("qkv", N, 3 * C, 1.0), y("y", N, C), dy = random_matrix("dy", N, C),
                   dqkv("dqkv", N, 3 * C);
      // Both kernels; the flash one's backward also recomputes the scores (not counted).
      for (const auto kernel : {ops::AttentionKernel::blocked, ops::AttentionKernel::flash}) {
        const Buffers buffers(B, T, H, C / H, ops::default_causal_block<Memory>(), kernel);
        const Timing f = time_it(s.repeats, [&]() { ops::attention_forward(space, y, buffers, qkv, B, T, H); });
        const Timing g =
            time_it(s.repeats, [&]() { ops::attention_backward(space, dqkv, dy, buffers, qkv, y, B, T, H); });
        print_op(kernel == ops::AttentionKernel::flash ? "attention (flash)" : "attention", f, g, 12.0 * N * T * C,
                 sgemm_gflops);
        // What one layer keeps for its backward, and the scratch all layers share.
        std::size_t kept = 0, scratch = 0;
        buffers.for_each_kept_view([&](const auto& view) { kept += view.span() * sizeof(Scalar); });
        buffers.for_each_scratch_view([&](const auto& view) { scratch += view.span() * sizeof(Scalar); });
        trident_bench::print_json<Space>(
            "{\"bench\":\"attention_memory\",\"kernel\":\"%s\",\"kept_bytes_per_layer\":%zu,"
            "\"shared_scratch_bytes\":%zu}\n",
            ops::attention_kernel_name(kernel), kept, scratch);
      }
    }
    {
      const Matrix x = random_matrix("x", N, C, 1.0), y("y", N, C), dy = random_matrix("dy", N, C), dx("dx", N, C);
      const Vector w = random_vector("w", C, 1.0), b = random_vector("b", C), mean("mean", N), rstd("rstd", N),
                   dw("dw", C), db("db", C);
      const Timing f = time_it(s.repeats, [&]() { ops::layernorm_forward(space, y, mean, rstd, x, w, b); });
      const Timing g =
          time_it(s.repeats, [&]() { ops::layernorm_backward(space, dx, dw, db, dy, x, w, mean, rstd, true); });
      print_op("layernorm", f, g, 0, sgemm_gflops);
    }
    {
      const Matrix x = random_matrix("x", N, 4 * C, 1.0), y("y", N, 4 * C), dy = random_matrix("dy", N, 4 * C),
                   dx("dx", N, 4 * C);
      const Timing f = time_it(s.repeats, [&]() { ops::gelu_forward(space, y, x); });
      const Timing g = time_it(s.repeats, [&]() { ops::gelu_backward(space, dx, x, dy); });
      print_op("gelu", f, g, 0, sgemm_gflops);
    }
    {
      // The MLP's first linear and its GELU: the bias added beside the product and summed beside
      // the activation's derivative, or added and summed by the activation (how nn runs them).
      const Matrix x = random_matrix("x", N, C), w = random_matrix("w", C, 4 * C), pre("pre", N, 4 * C),
                   y("y", N, 4 * C), dy = random_matrix("dy", N, 4 * C), dpre("dpre", N, 4 * C), dx("dx", N, C),
                   dw("dw", C, 4 * C);
      const Vector b = random_vector("b", 4 * C), db("db", 4 * C);
      const double flops = 3 * 2.0 * N * C * 4 * C;
      const Timing f = time_it(s.repeats, [&]() {
        ops::linear_forward(space, pre, x, w, b);
        ops::gelu_forward(space, y, pre);
      });
      const Timing g = time_it(s.repeats, [&]() {
        ops::gelu_backward(space, dpre, pre, dy);
        ops::linear_backward(space, dx, dw, db, dpre, x, w);
      });
      print_op("fc + gelu, bias beside", f, g, flops, sgemm_gflops);
      const Timing ff = time_it(s.repeats, [&]() {
        ops::linear_forward(space, pre, x, w, Vector());
        ops::bias_activation_forward<ops::Gelu>(space, pre, y, b);
      });
      const Timing fg = time_it(s.repeats, [&]() {
        ops::bias_activation_backward<ops::Gelu>(space, dpre, db, pre, dy);
        ops::linear_backward(space, dx, dw, Vector(), dpre, x, w);
      });
      print_op("fc + gelu, bias in the activation", ff, fg, flops, sgemm_gflops);
    }
    {
      const Matrix logits = random_matrix("logits", N, V, 2.0), dlogits("dlogits", N, V);
      const Vector losses("losses", N);
      const Tokens targets("targets", N);
      const Timing f = time_it(s.repeats, [&]() { ops::cross_entropy_forward(space, losses, logits, targets); });
      const Timing g =
          time_it(s.repeats, [&]() { ops::cross_entropy_backward(space, dlogits, logits, targets, 1.0f / N); });
      print_op("cross_entropy", f, g, 0, sgemm_gflops);
      const Timing fused = time_it(
          s.repeats, [&]() { ops::cross_entropy_forward_backward(space, losses, dlogits, logits, targets, 1.0f / N); });
      print_op("cross_entropy_forward_backward (fwd_ms: both)", fused, Timing{0, 0}, 0, sgemm_gflops);
    }
    {
      const Matrix wte = random_matrix("wte", V, C), wpe = random_matrix("wpe", T, C), out("out", N, C),
                   dout = random_matrix("dout", N, C), dwte("dwte", V, C), dwpe("dwpe", T, C);
      Tokens tokens("tokens", N);
      auto ht = Kokkos::create_mirror_view(tokens);
      for (int n = 0; n < N; ++n) ht(n) = static_cast<int>((n * 2654435761u) % static_cast<unsigned>(V));
      Kokkos::deep_copy(tokens, ht);
      const Timing f = time_it(s.repeats, [&]() { ops::embedding_forward(space, out, tokens, wte, wpe, T); });
      const Timing g = time_it(s.repeats, [&]() { ops::embedding_backward(space, dwte, dwpe, dout, tokens, T); });
      print_op("embedding", f, g, 0, sgemm_gflops);
    }
    {
      const Matrix a = random_matrix("a", N, C), b = random_matrix("b", N, C), out("out", N, C);
      const Timing f = time_it(s.repeats, [&]() { ops::residual_forward(space, out, a, b); });
      const Timing g = time_it(s.repeats, [&]() { ops::add_inplace(space, out, a); });
      print_op("residual (fwd: a+b, bwd: y+=x)", f, g, 0, sgemm_gflops);
    }
    {
      // A pre-LayerNorm residual's backward: the LayerNorm's input gradient, then the identity
      // path's added in a pass of its own, against both in the LayerNorm's pass.
      const Matrix x = random_matrix("x", N, C, 1.0), y("y", N, C), dy = random_matrix("dy", N, C),
                   skip = random_matrix("skip", N, C), branch("branch", N, C), dx("dx", N, C);
      const Vector w = random_vector("w", C, 1.0), b = random_vector("b", C), mean("mean", N), rstd("rstd", N),
                   dw("dw", C), db("db", C);
      ops::layernorm_forward(space, y, mean, rstd, x, w, b);
      const Timing apart = time_it(s.repeats, [&]() {
        ops::layernorm_backward(space, branch, dw, db, dy, x, w, mean, rstd);
        ops::residual_forward(space, dx, skip, branch);
      });
      const Timing joined =
          time_it(s.repeats, [&]() { ops::layernorm_backward_plus(space, dx, skip, dw, db, dy, x, w, mean, rstd); });
      print_op("layernorm backward + residual gradient, apart (bwd)", Timing{}, apart, 0, sgemm_gflops);
      print_op("layernorm backward + residual gradient, joined (bwd)", Timing{}, joined, 0, sgemm_gflops);
    }
    {
      // The operators on bfloat16 activations (statistics, weight gradients and attention
      // buffers in float) against the same calls in float, timed side by side: what storing 16
      // bits costs or saves on a backend without 16-bit arithmetic, where a GEMM widens its
      // 16-bit operands to float.
      using Half = Kokkos::View<trident::bfloat16**, Kokkos::LayoutRight, Memory>;
      using HalfVector = Kokkos::View<trident::bfloat16*, Kokkos::LayoutRight, Memory>;
      const auto half_of = [&](const Matrix& m) {
        Half h(m.label() + "_bf16", m.extent(0), m.extent(1));
        ops::detail::for_each_element(space, "bench::to_bf16", m.extent(0), m.extent(1),
                                      ops::detail::CopyElements<Half, Matrix>{h, m});
        return h;
      };
      const auto half_vector_of = [&](const Vector& v) {
        HalfVector h(v.label() + "_bf16", v.extent(0));
        ops::convert(space, h, v);
        return h;
      };
      const auto compare = [&](const char* name, const std::function<void()>& in_float,
                               const std::function<void()>& in_bf16) {
        const Timing f = time_it(s.repeats, in_float), h = time_it(s.repeats, in_bf16);
        trident_bench::print_json<Space>(
            "{\"bench\":\"op_bf16\",\"op\":\"%s\",\"float_ms\":%.3f,\"bf16_ms\":%.3f,\"bf16_over_float\":%.3f}\n", name,
            f.median * 1e3, h.median * 1e3, h.median / f.median);
        std::fflush(stdout);
      };
      {
        const Matrix x = random_matrix("x", N, C), w = random_matrix("w", C, 4 * C), y("y", N, 4 * C),
                     dy = random_matrix("dy", N, 4 * C), dx("dx", N, C), dw("dw", C, 4 * C);
        const Vector b = random_vector("b", 4 * C), db("db", 4 * C);
        const Half xh = half_of(x), wh = half_of(w), yh = half_of(y), dyh = half_of(dy), dxh = half_of(dx);
        const HalfVector bh = half_vector_of(b);
        compare(
            "linear fc, forward and backward",
            [&]() {
              ops::linear_forward(space, y, x, w, b);
              ops::linear_backward(space, dx, dw, db, dy, x, w);
            },
            [&]() {
              ops::linear_forward(space, yh, xh, wh, bh);
              ops::linear_backward(space, dxh, dw, db, dyh, xh, wh);
            });
      }
      {
        const Matrix qkv = random_matrix("qkv", N, 3 * C, 1.0), y("y", N, C), dy = random_matrix("dy", N, C),
                     dqkv("dqkv", N, 3 * C);
        const Half qkvh = half_of(qkv), yh = half_of(y), dyh = half_of(dy), dqkvh = half_of(dqkv);
        const Buffers buffers(B, T, H, C / H, ops::default_causal_block<Memory>(), ops::AttentionKernel::flash);
        compare(
            "attention (flash), forward and backward",
            [&]() {
              ops::attention_forward(space, y, buffers, qkv, B, T, H);
              ops::attention_backward(space, dqkv, dy, buffers, qkv, y, B, T, H);
            },
            [&]() {
              ops::attention_forward(space, yh, buffers, qkvh, B, T, H);
              ops::attention_backward(space, dqkvh, dyh, buffers, qkvh, yh, B, T, H);
            });
      }
      {
        const Matrix x = random_matrix("x", N, C, 1.0), y("y", N, C), dy = random_matrix("dy", N, C), dx("dx", N, C);
        const Vector w = random_vector("w", C, 1.0), b = random_vector("b", C), mean("mean", N), rstd("rstd", N),
                     dw("dw", C), db("db", C);
        const Half xh = half_of(x), yh = half_of(y), dyh = half_of(dy), dxh = half_of(dx);
        const HalfVector wh = half_vector_of(w), bh = half_vector_of(b);
        compare(
            "layernorm, forward and backward",
            [&]() {
              ops::layernorm_forward(space, y, mean, rstd, x, w, b);
              ops::layernorm_backward(space, dx, dw, db, dy, x, w, mean, rstd, true);
            },
            [&]() {
              ops::layernorm_forward(space, yh, mean, rstd, xh, wh, bh);
              ops::layernorm_backward(space, dxh, dw, db, dyh, xh, wh, mean, rstd, true);
            });
      }
      {
        const Matrix x = random_matrix("x", N, 4 * C, 1.0), y("y", N, 4 * C), dy = random_matrix("dy", N, 4 * C);
        const Half xh = half_of(x), yh = half_of(y), dyh = half_of(dy);
        compare(
            "gelu, forward and backward",
            [&]() {
              ops::gelu_forward(space, y, x);
              ops::gelu_backward(space, y, x, dy);
            },
            [&]() {
              ops::gelu_forward(space, yh, xh);
              ops::gelu_backward(space, yh, xh, dyh);
            });
      }
    }

    // Row-wise kernels on this space: a plain loop over rows (what trident runs on host spaces)
    // against one team per row with Kokkos::AUTO team size (what it runs on devices).
    {
      const Matrix logits = random_matrix("logits", N, V, 2.0), dlogits("dlogits", N, V),
                   x = random_matrix("x", N, C, 1.0), y("y", N, C);
      const Vector losses("losses", N), w = random_vector("w", C, 1.0), b = random_vector("b", C), mean("mean", N),
                                        rstd("rstd", N);
      const Tokens targets("targets", N);
      using CeForward = ops::detail::CrossEntropyForwardRow<Vector, Matrix, Tokens>;
      using CeBackward = ops::detail::CrossEntropyBackwardRow<Matrix, Matrix, Tokens, Vector, false>;
      using LnForward = ops::detail::LayerNormForwardRow<Matrix, Vector, Vector, Matrix, Vector, Vector>;
      compare_row_policies("cross_entropy_forward", s.repeats, N, CeForward{losses, logits, targets, V});
      compare_row_policies("cross_entropy_backward", s.repeats, N,
                           CeBackward{dlogits, logits, targets, V, 1.0f, Vector()});
      compare_row_policies("layernorm_forward", s.repeats, N, LnForward{y, mean, rstd, x, w, b, C, 1e-5f});
    }

    // The whole step, each run paired with a run of the step's GEMMs through KokkosBlas::gemm
    // right after it, so a machine shared with other work slows both sides of each ratio alike.
    Gpt2Step step(s);
    ReferenceGemms reference(step_gemms(s));
    double loss = step.forward();
    const Timing forward_only = time_it(s.repeats, [&]() { loss = step.forward(); });
    const auto run_step = [&]() {
      step.zero_gradients();
      loss = step.forward();
      step.backward();
    };
    run_step();
    reference.run();
    std::vector<double> step_seconds, reference_seconds, ratios;
    const double model_flops = static_cast<double>(N) * (6.0 * step.parameters_without_wpe() + 12.0 * s.L * C * T);
    for (int r = 0; r < s.repeats; ++r) {
      Kokkos::Timer timer;
      run_step();
      Kokkos::fence();
      step_seconds.push_back(timer.seconds());
      timer.reset();
      reference.run();
      Kokkos::fence();
      reference_seconds.push_back(timer.seconds());
      ratios.push_back((model_flops / step_seconds.back()) / (reference.flops / reference_seconds.back()));
    }
    const auto median = [](std::vector<double> x) {
      std::sort(x.begin(), x.end());
      return x[x.size() / 2];
    };
    const double step_median = median(step_seconds), reference_median = median(reference_seconds);
    trident_bench::print_json<Space>(
        "{\"bench\":\"step\",\"loss\":%.5f,\"forward_ms\":%.2f,\"step_ms\":%.2f,\"step_best_ms\":%.2f,"
        "\"model_gflop\":%.3f,\"step_gemm_gflop\":%.3f,\"model_gflops\":%.2f,\"sgemm_gflops_paired\":%.2f,"
        "\"fraction_of_sgemm\":%.3f,\"fraction_of_sgemm_min\":%.3f,\"fraction_of_sgemm_max\":%.3f,"
        "\"tokens_per_s\":%.0f}\n",
        loss, forward_only.median * 1e3, step_median * 1e3,
        *std::min_element(step_seconds.begin(), step_seconds.end()) * 1e3, model_flops * 1e-9, reference.flops * 1e-9,
        model_flops / step_median * 1e-9, reference.flops / reference_median * 1e-9, median(ratios),
        *std::min_element(ratios.begin(), ratios.end()), *std::max_element(ratios.begin(), ratios.end()),
        N / step_median);
  }
  Kokkos::finalize();
  return 0;
}
