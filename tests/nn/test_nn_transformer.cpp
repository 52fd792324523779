// A user's small transformer written with trident::nn (token and position embeddings, a
// causal self-attention block and an MLP block, pre-LayerNorm, a classifier over the
// vocabulary) against a one-rank reference written here from the definitions, in every layout
// of the ranks this test runs on: the attention split by heads and the embedding by
// vocabulary rows under tensor parallelism, with data and pipeline parallelism, ZeRO stages
// and pipeline schedules varied.

#include "layouts.hpp"
#include "reference.hpp"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

namespace {

using namespace nn_layouts;
namespace ref = nn_reference;

// H = 4 heads of 2 features so that tensor parallelism over 4 ranks holds one head each; a
// vocabulary of 11 so that its rows split unevenly over 2 and 4 ranks.
constexpr int vocab = 11, features = 8, heads = 4, seq = 4, sequences = 8, rows = sequences * seq;
constexpr int mlp_features = 2 * features;

// 6 units, every cut between them at the model's width. `tied`: the embedding is named "wte"
// and the head is tied to it (its logits split by vocabulary under tensor parallelism).
nn::ModelSpec user_transformer(bool tied = false) {
  const int c = features;
  return nn::megatron_pairs(nn::sequential(
      {tied ? nn::named("wte", nn::embedding(vocab, c)) : nn::embedding(vocab, c), nn::position_embedding(seq, c),
       nn::residual(
           {nn::layer_norm(c), nn::linear(c, 3 * c), nn::causal_self_attention(c, heads, seq), nn::linear(c, c)}),
       nn::residual({nn::layer_norm(c), nn::linear(c, mlp_features), nn::gelu(), nn::linear(mlp_features, c)}),
       nn::layer_norm(c), tied ? nn::tied_head(vocab, c, "wte") : nn::linear(c, vocab)},
      nn::Loss::cross_entropy));
}

// Every id of the vocabulary, 0 and vocab - 1 included, in a pattern no position repeats.
int token(int row) {
  return (7 * row + 3 * (row / seq) + 1) % vocab;
}
int target(int row) {
  return (3 * token(row) + row % seq) % vocab;
}

// ---- the reference, from the definitions ----

// Per sequence of `seq` rows and per head of d = C / H features: softmax over the keys j <= t
// of q_t . k_j / sqrt(d), times the values; heads side by side.
ref::Rows causal_self_attention(const ref::Rows& qkv) {
  const int c = features, d = features / heads;
  ref::Rows out(qkv.size(), std::vector<double>(static_cast<std::size_t>(c)));
  for (std::size_t s = 0; s < qkv.size(); s += seq)
    for (int h = 0; h < heads; ++h)
      for (int t = 0; t < seq; ++t) {
        const auto& q = qkv[s + static_cast<std::size_t>(t)];
        std::vector<double> weights;
        for (int j = 0; j <= t; ++j) {
          const auto& k = qkv[s + static_cast<std::size_t>(j)];
          double dot = 0;
          for (int e = 0; e < d; ++e)
            dot += q[static_cast<std::size_t>(h * d + e)] * k[static_cast<std::size_t>(c + h * d + e)];
          weights.push_back(dot / std::sqrt(static_cast<double>(d)));
        }
        const double max = *std::max_element(weights.begin(), weights.end());
        double total = 0;
        for (double& w : weights) total += (w = std::exp(w - max));
        for (int j = 0; j <= t; ++j) {
          const auto& v = qkv[s + static_cast<std::size_t>(j)];
          for (int e = 0; e < d; ++e)
            out[s + static_cast<std::size_t>(t)][static_cast<std::size_t>(h * d + e)] +=
                weights[static_cast<std::size_t>(j)] / total * v[static_cast<std::size_t>(2 * c + h * d + e)];
        }
      }
  return out;
}

// The mean over rows of the cross-entropy of the logits against the target token; `tied`: the
// logits are x wte^T.
double reference_loss(const Tensors& p, bool tied) {
  const int c = features;
  const auto& wte = p.at(tied ? "wte.weight" : "0.weight");
  const auto& wpe = p.at("1.weight");
  ref::Rows x(rows, std::vector<double>(static_cast<std::size_t>(c)));
  for (int r = 0; r < rows; ++r)
    for (int j = 0; j < c; ++j)
      x[static_cast<std::size_t>(r)][static_cast<std::size_t>(j)] =
          wte[static_cast<std::size_t>(token(r) * c + j)] + wpe[static_cast<std::size_t>((r % seq) * c + j)];
  auto h = ref::linear(ref::layer_norm(x, p, "2.0."), p, "2.1.", c, 3 * c);
  x = ref::add(x, ref::linear(causal_self_attention(h), p, "2.3.", c, c));
  h = ref::pointwise(ref::linear(ref::layer_norm(x, p, "3.0."), p, "3.1.", c, mlp_features), ref::gelu);
  x = ref::add(x, ref::linear(h, p, "3.3.", mlp_features, c));
  const auto normed = ref::layer_norm(x, p, "4.");
  ref::Rows logits = tied ? ref::Rows(rows, std::vector<double>(vocab)) : ref::linear(normed, p, "5.", c, vocab);
  if (tied)
    for (int r = 0; r < rows; ++r)
      for (int v = 0; v < vocab; ++v)
        for (int j = 0; j < c; ++j)
          logits[static_cast<std::size_t>(r)][static_cast<std::size_t>(v)] +=
              normed[static_cast<std::size_t>(r)][static_cast<std::size_t>(j)] *
              wte[static_cast<std::size_t>(v * c + j)];
  double total = 0;
  for (int r = 0; r < rows; ++r) {
    const auto& l = logits[static_cast<std::size_t>(r)];
    const double max = *std::max_element(l.begin(), l.end());
    double sum = 0;
    for (double v : l) sum += std::exp(v - max);
    total += max + std::log(sum) - l[static_cast<std::size_t>(target(r))];
  }
  return total / rows;
}

Matrix token_rows(int first, int count) {
  return rows_of(first, count, 1, [](int row, int) { return static_cast<double>(token(row)); });
}

Targets target_rows(int first, int count) {
  Kokkos::View<int*, Space::memory_space> classes("classes", count);
  auto host = Kokkos::create_mirror_view(classes);
  for (int r = 0; r < count; ++r) host(r) = target(first + r);
  Kokkos::deep_copy(classes, host);
  return Targets{{}, classes};
}

Problem transformer_problem(bool tied = false, nn::AttentionKernel kernel = nn::AttentionKernel::blocked) {
  Problem problem;
  problem.spec = nn::with_attention_kernel(user_transformer(tied), kernel);
  problem.rows = rows;
  problem.inputs = token_rows;
  problem.targets = target_rows;
  problem.reference_loss = [tied](const Tensors& p) { return reference_loss(p, tied); };
  // wte enters the loss twice, through the embedding and the logits: central differences of
  // its entries carry the larger curvature of both.
  if (tied) problem.difference_tolerance = 1e-5;
  return problem;
}

}  // namespace

TEST_CASE("a user's transformer matches the one-rank reference in every layout", "[nn]") {
  auto layouts = layouts_of(trident_test::world_size());
  if (layouts.empty()) {
    WARN("no layouts for " << trident_test::world_size() << " ranks");
    return;
  }
  // The vocabulary-parallel embedding's shards under ZeRO-3's gathered parameters.
  if (trident_test::world_size() == 4) layouts.push_back({2, 2, 1, 3});
  check_every_layout(transformer_problem(), layouts);
}

TEST_CASE("a transformer with flash attention matches the reference in every layout", "[nn]") {
  // Heads split by tensor parallelism, recomputed, split into the zero-bubble passes: the
  // kept log-sum-exps and the backward's recomputation give the gradients of the definition.
  const Problem problem = transformer_problem(false, nn::AttentionKernel::flash);
  CHECK(nn::describe(problem.spec.layers[2].inner[2]) == "causal_self_attention(C = 8, H = 4, T = 4, flash)");
  check_every_layout(problem, layouts_of(trident_test::world_size()));
}

TEST_CASE("a transformer whose head is tied to its embedding matches the reference", "[nn]") {
  // Every layout; under pipeline cuts the head's stage holds a copy of the table, whose
  // gradient the layout sums with the embedding's (nn::tied_tables).
  check_every_layout(transformer_problem(true), layouts_of(trident_test::world_size()));
  CHECK(nn::tied_tables(user_transformer(true)).size() == 1);
  CHECK(nn::tied_tables(user_transformer(true))[0].embedding_layer == 0);
  CHECK(nn::tied_tables(user_transformer(true))[0].head_layer == 5);
  CHECK(nn::tied_tables(user_transformer(false)).empty());
  // One table, declared once, read by the head's unit too.
  Model model(Space(), user_transformer(true));
  CHECK(model.parameters().info("wte.weight").global_shape == std::vector<std::int64_t>{vocab, features});
  CHECK(model.tied_copies().empty());
  Model head_stage(Space(), user_transformer(true), trident::tensor_parallel::TensorParallelGroup::single(), {4, 6});
  CHECK(head_stage.tied_copies() == std::vector<std::string>{"wte.weight"});
  CHECK_THROWS_WITH(
      Model(Space(), nn::sequential({nn::embedding(vocab, features), nn::tied_head(vocab, features, "wte")},
                                    nn::Loss::cross_entropy)),
      "trident::nn: a tied head reads 'wte.weight', which no embedding before it holds (the tables before it: "
      "'0.weight'; name the head's embedding)");
  CHECK_THROWS_WITH(Model(Space(), nn::sequential({nn::linear(1, features), nn::tied_head(vocab, features, "wte")},
                                                  nn::Loss::cross_entropy)),
                    "trident::nn: a tied head reads 'wte.weight', which no embedding before it holds (no embedding "
                    "comes before it)");
}

TEST_CASE("megatron_pairs splits the attention's projection per Q, K and V", "[nn]") {
  const auto spec = user_transformer();
  const auto& attention_block = spec.layers[2].inner;
  CHECK(nn::describe(attention_block[1]) == "linear(8 -> 24, column, 3 parts)");
  CHECK(nn::describe(attention_block[2]) == "causal_self_attention(C = 8, H = 4, T = 4)");
  CHECK(nn::describe(attention_block[3]) == "linear(8 -> 8, row)");
  CHECK(nn::describe(spec.layers[3].inner[1]) == "linear(8 -> 16, column)");
  CHECK(nn::describe(spec.layers[0]) == "embedding(V = 11, C = 8)");
  CHECK(nn::describe(spec.layers[1]) == "position_embedding(T = 4, C = 8)");
  CHECK(nn::describe(nn::fused_linear(8, 24, 3, nn::Parallel::column)) == "linear(8 -> 24, column, 3 parts)");
}

TEST_CASE("transformer specs and token ids are checked with the values named", "[nn]") {
  using nn::causal_self_attention;
  using nn::embedding;
  using nn::linear;
  const auto cross_entropy = nn::Loss::cross_entropy;
  CHECK_THROWS_WITH(
      Model(Space(), nn::sequential({embedding(11, 8), linear(8, 16), causal_self_attention(8, 2, 4), linear(8, 11)},
                                    cross_entropy)),
      "trident::nn: layer 2 (causal_self_attention(C = 8, H = 2, T = 4)) reads [Q | K | V] of 3 x 8 = 24 features "
      "but receives 16");
  CHECK_THROWS_WITH(causal_self_attention(8, 3, 4),
                    "trident::nn::causal_self_attention: 8 features do not split into 3 heads");
  CHECK_THROWS_WITH(
      Model(Space(), nn::sequential({embedding(11, 8), linear(8, 24, nn::Parallel::column),
                                     causal_self_attention(8, 2, 4), linear(8, 11, nn::Parallel::row)},
                                    cross_entropy)),
      Catch::Contains("layer 2 (causal_self_attention(C = 8, H = 2, T = 4)) needs the column-parallel linear before "
                      "it split per Q, K and V block"));
  CHECK_THROWS_WITH(Model(Space(), nn::sequential({embedding(11, 8), nn::fused_linear(8, 24, 3, nn::Parallel::column),
                                                   linear(24, 11, nn::Parallel::row)},
                                                  cross_entropy)),
                    Catch::Contains("layer 2 (linear(24 -> 11, row)) is row-parallel over its input in one block"));
  CHECK_THROWS_WITH(Model(Space(), nn::sequential({linear(3, 8), embedding(11, 8)}, cross_entropy)),
                    "trident::nn: layer 1 (embedding(V = 11, C = 8)) reads one column of token ids, whole on every "
                    "rank, but receives 8 features");
  CHECK_THROWS_WITH(Model(Space(), nn::sequential({embedding(11, 8), nn::position_embedding(4, 6)}, cross_entropy)),
                    Catch::Contains("adds positions to 6 features but receives 8"));

  // Heads over tensor-parallel ranks: 3 heads of 4 features split over 2 ranks.
  const auto three_heads = nn::megatron_pairs(nn::sequential(
      {embedding(11, 12), linear(12, 36), causal_self_attention(12, 3, 4), linear(12, 11)}, cross_entropy));
  CHECK_NOTHROW(nn::model_flows(three_heads, 1, false));
  CHECK_THROWS_WITH(nn::model_flows(three_heads, 2, false),
                    "trident::nn: layer 2 (causal_self_attention(C = 12, H = 3, T = 4)) splits its 3 heads over 2 "
                    "tensor-parallel ranks, which does not divide them");
  if (trident_test::world_size() > 1) {  // the same from a real group, on every rank
    const trident::comm::Communicator world(MPI_COMM_WORLD, "world");
    CHECK_THROWS_WITH(Model(Space(), three_heads, {world, false}), Catch::Contains("splits its 3 heads over"));
  }

  // Ids: integers in [0, V), anything else named with its row.
  Model model(Space(), nn::sequential({embedding(11, 8), nn::position_embedding(4, 8), linear(8, 11)}, cross_entropy));
  model.initialize(1);
  const auto ids = [](std::vector<double> values) {
    return rows_of(0, static_cast<int>(values.size()), 1,
                   [values](int row, int) { return values[static_cast<std::size_t>(row)]; });
  };
  CHECK_NOTHROW(model.predict(ids({0, 10, 3, 4})));
  CHECK_THROWS_WITH(model.predict(ids({0, 1, 2, 11})),
                    "trident::nn: embedding(V = 11, C = 8): row 3 holds the id 11, which is not an integer in [0, 11)");
  CHECK_THROWS_WITH(model.predict(ids({0, -1, 2, 3})), Catch::Contains("row 1 holds the id -1, which is not"));
  CHECK_THROWS_WITH(model.predict(ids({0, 1, 2.5, 3})), Catch::Contains("row 2 holds the id 2.5, which is not"));
  CHECK_THROWS_WITH(model.predict(ids({0, 1, 2, 3, 4, 5})),
                    "trident::nn: position_embedding(T = 4, C = 8) reads sequences of T = 4 rows, but a micro-batch "
                    "has 6 rows");
}

TEST_CASE("a transformer learns to recall the first token of each sequence", "[nn]") {
  // The target of every row is its sequence's first token: only attention to position 0 tells.
  constexpr int v = 11, c = 16, t = 4, n = 4 * v * t;
  const auto spec = nn::sequential(
      {nn::embedding(v, c), nn::position_embedding(t, c),
       nn::residual({nn::layer_norm(c), nn::linear(c, 3 * c), nn::causal_self_attention(c, 2, t), nn::linear(c, c)}),
       nn::layer_norm(c), nn::linear(c, v)},
      nn::Loss::cross_entropy);
  const auto id = [](int row) { return row % t == 0 ? (row / t) % v : (5 * row + row / (t * v)) % v; };
  const auto first_id = [&](int row) { return id(row - row % t); };
  Model model(Space(), spec);
  model.initialize(5);
  const Matrix x = rows_of(0, n, 1, [&](int row, int) { return static_cast<double>(id(row)); });
  Kokkos::View<int*, Space::memory_space> classes("classes", n);
  auto host = Kokkos::create_mirror_view(classes);
  for (int r = 0; r < n; ++r) host(r) = first_id(r);
  Kokkos::deep_copy(classes, host);
  trident::optim::AdamW<double, Space::memory_space> optimizer(model.parameters(), {0.9, 0.95, 1e-8, 0.0});
  double first = 0, last = 0;
  for (int step = 1; step <= 200; ++step) {
    model.zero_grad();
    const double loss = model.forward(x, {{}, classes}, 1.0 / n) / n;
    model.backward(1.0 / n);
    optimizer.step(Space(), model.parameters(), step, 0.02);
    if (step == 1) first = loss;
    last = loss;
  }
  INFO("loss " << first << " -> " << last);
  CHECK(first > 2.0);  // about ln 11 at the start
  CHECK(last < 0.05 * first);
}

TEST_CASE("a bad token id or target class on one rank stops the step on every rank", "[nn]") {
  const int world = trident_test::world_size();
  trident::train::Layout layout;
  layout.pp = world;  // only the first stage reads the ids and only the last the classes
  trident::train::TrainerSettings settings;
  settings.seed = seed;
  trident::train::Trainer<double, Space> trainer(trident::comm::Communicator(MPI_COMM_WORLD, "world"),
                                                 user_transformer(true), layout, settings);
  const int rank = trident_test::world_rank();
  const auto good_ids = token_rows(0, rows);
  const auto good_targets = target_rows(0, rows);
  const auto bad_ids = token_rows(0, rows);
  Kokkos::deep_copy(Kokkos::subview(bad_ids, 3, 0), static_cast<double>(vocab));
  const auto bad_targets = target_rows(0, rows);
  Kokkos::deep_copy(Kokkos::subview(bad_targets.classes, 5), -1);
  CHECK_THROWS_WITH(trainer.step({rank == 0 ? bad_ids : good_ids, good_targets}, learning_rate),
                    Catch::Contains("the input of row 3 is 11, not a token id in [0, 11)"));
  CHECK_THROWS_WITH(trainer.step({good_ids, rank == world - 1 ? bad_targets : good_targets}, learning_rate),
                    Catch::Contains("the target of row 5 is class -1, outside [0, 11)"));
  CHECK(trainer.steps_done() == 0);
  const auto report = trainer.step({good_ids, good_targets}, learning_rate);
  CHECK(report.step == 1);
  CHECK(std::abs(report.loss - std::log(static_cast<double>(vocab))) < 0.5);
}
