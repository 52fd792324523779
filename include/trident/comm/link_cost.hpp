#pragma once
// The alpha-beta model of communication: moving b bytes over a link takes alpha + b / beta.
// With one link inside nodes and one between them, it predicts a group's all-reduce, flat (a
// ring through all ranks, numbered node by node) and in two levels (hierarchical_allreduce.hpp).
// fit_link_cost() calibrates a link from measured transfer times.

#include <trident/core/error.hpp>

#include <cmath>
#include <cstddef>
#include <vector>

namespace trident {
namespace comm {

struct LinkCost {
  double latency_s = 0;    // alpha: the time of an empty message
  double bytes_per_s = 0;  // beta: the bandwidth of a long one

  double seconds(double bytes) const { return latency_s + bytes / bytes_per_s; }
};

// The links of a machine of nodes: between the ranks of a node, and out of a node (one per node,
// each direction its own, shared by all the node's ranks).
struct NodeLinks {
  LinkCost intra, inter;
};

// A ring over nodes x ranks_per_node ranks numbered node by node: 2 (p - 1) steps, each moving
// bytes / p from every rank to the next. A step lasts as long as its slowest transfer, which with
// several nodes is the one leaving each node (alone on that node's link).
inline double ring_allreduce_seconds(const NodeLinks& links, int nodes, int ranks_per_node, double bytes) {
  const int ranks = nodes * ranks_per_node;
  if (ranks <= 1) return 0;
  const LinkCost& slowest = nodes > 1 ? links.inter : links.intra;
  return 2.0 * (ranks - 1) * slowest.seconds(bytes / ranks);
}

// Two levels: a ring reduce-scatter and, after, a ring all-gather inside each node (k - 1 steps
// of bytes / k each), and between them k rings over the n nodes at once, each on bytes / k: their
// 2 (n - 1) steps each move k * bytes / (k n) = bytes / n over the node's link.
inline double two_level_allreduce_seconds(const NodeLinks& links, int nodes, int ranks_per_node, double bytes) {
  const int k = ranks_per_node, n = nodes;
  const double inside = k > 1 ? 2.0 * (k - 1) * links.intra.seconds(bytes / k) : 0.0;
  const double between = n > 1 ? 2.0 * (n - 1) * links.inter.seconds(bytes / n) : 0.0;
  return inside + between;
}

// The least-squares line time = alpha + bytes / beta through measured (bytes, seconds) pairs.
inline LinkCost fit_link_cost(const std::vector<double>& bytes, const std::vector<double>& seconds) {
  require_argument(bytes.size() == seconds.size() && bytes.size() >= 2,
                   "trident::comm::fit_link_cost: needs two or more (bytes, seconds) pairs, got ", bytes.size(),
                   " sizes and ", seconds.size(), " times");
  const auto count = static_cast<double>(bytes.size());
  double mean_b = 0, mean_t = 0;
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    mean_b += bytes[i] / count;
    mean_t += seconds[i] / count;
  }
  double covariance = 0, variance = 0;
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    covariance += (bytes[i] - mean_b) * (seconds[i] - mean_t);
    variance += (bytes[i] - mean_b) * (bytes[i] - mean_b);
  }
  require_argument(variance > 0 && covariance > 0,
                   "trident::comm::fit_link_cost: the times do not grow with the sizes; no bandwidth to fit");
  const double per_byte = covariance / variance;
  return LinkCost{std::fmax(0.0, mean_t - per_byte * mean_b), 1.0 / per_byte};
}

}  // namespace comm
}  // namespace trident
