#pragma once
// What a stage keeps between a micro-batch's forward and its backward: one slot per
// micro-batch in flight. A slot is taken at the forward, given back after the backward (after
// backward_weight when the backward is split) and reused by a later micro-batch, so the pool
// holds as many slots as the schedule keeps micro-batches in flight, and it measures the
// schedule's activation memory: 1F1B keeps p - r micro-batches on rank r, GPipe all m.

#include <trident/core/error.hpp>

#include <algorithm>
#include <cstddef>
#include <deque>
#include <map>
#include <vector>

namespace trident::pipeline {

// What a pool holds, in micro-batches and in bytes (the bytes its owner reports per slot).
struct PoolStatistics {
  int slots = 0;        // slots allocated so far
  int in_use = 0;       // micro-batches held now
  int peak_in_use = 0;  // the most held at once since the last reset_peaks()
  std::size_t bytes_in_use = 0;
  std::size_t peak_bytes = 0;
};

template <class Slot>
class ActivationPool {
 public:
  // The slot of `micro_batch`: a free one, or a new one from make() when none is free.
  template <class Make>
  Slot& acquire(int micro_batch, Make&& make) {
    require_argument(m_used.count(micro_batch) == 0, "trident::pipeline::ActivationPool: micro-batch ", micro_batch,
                     " already holds a slot; its backward has not run");
    std::size_t index = m_slots.size();
    if (m_free.empty()) {
      m_slots.push_back(make());  // a deque: earlier slots stay where they are
      m_bytes.push_back(0);
    } else {
      index = m_free.back();
      m_free.pop_back();
    }
    m_used[micro_batch] = index;
    m_stats.slots = static_cast<int>(m_slots.size());
    m_stats.in_use = static_cast<int>(m_used.size());
    m_stats.peak_in_use = std::max(m_stats.peak_in_use, m_stats.in_use);
    return m_slots[index];
  }

  bool holds(int micro_batch) const { return m_used.count(micro_batch) != 0; }

  Slot& at(int micro_batch) { return m_slots[index_of(micro_batch)]; }
  const Slot& at(int micro_batch) const { return m_slots[index_of(micro_batch)]; }

  // The bytes the slot of `micro_batch` keeps for it (a slot may grow after its forward, e.g.
  // by the output gradients a split backward keeps for its weight pass).
  void set_bytes(int micro_batch, std::size_t bytes) {
    auto& held = m_bytes[index_of(micro_batch)];
    m_stats.bytes_in_use = m_stats.bytes_in_use - held + bytes;
    held = bytes;
    m_stats.peak_bytes = std::max(m_stats.peak_bytes, m_stats.bytes_in_use);
  }

  void release(int micro_batch) {
    const std::size_t index = index_of(micro_batch);
    m_stats.bytes_in_use -= m_bytes[index];
    m_bytes[index] = 0;
    m_used.erase(micro_batch);
    m_free.push_back(index);
    m_stats.in_use = static_cast<int>(m_used.size());
  }

  // Drops every slot (their shapes no longer fit); the peaks are kept.
  void clear() {
    m_slots.clear();
    m_bytes.clear();
    m_free.clear();
    m_used.clear();
    m_stats.slots = m_stats.in_use = 0;
    m_stats.bytes_in_use = 0;
  }

  // Peaks restart from what is held now (e.g. to measure one step).
  void reset_peaks() {
    m_stats.peak_in_use = m_stats.in_use;
    m_stats.peak_bytes = m_stats.bytes_in_use;
  }

  const PoolStatistics& statistics() const { return m_stats; }

  // Every slot allocated, free or not (to count what they share).
  const std::deque<Slot>& slots() const { return m_slots; }

 private:
  std::size_t index_of(int micro_batch) const {
    const auto found = m_used.find(micro_batch);
    require_argument(found != m_used.end(), "trident::pipeline::ActivationPool: micro-batch ", micro_batch,
                     " holds no slot; its forward has not run on this stage");
    return found->second;
  }

  std::deque<Slot> m_slots;
  std::vector<std::size_t> m_bytes;  // per slot, what it keeps for its micro-batch now
  std::vector<std::size_t> m_free;
  std::map<int, std::size_t> m_used;  // micro-batch -> slot
  PoolStatistics m_stats;
};

}  // namespace trident::pipeline
