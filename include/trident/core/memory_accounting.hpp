#pragma once
// Bytes a rank holds, by what they are for, and the peak. ZeRO's savings are claims about
// parameters + gradients + optimizer state per rank; the ledger is where they are counted, so
// a test can hold the code to the formulas and a report shows where memory goes.

#include <trident/core/error.hpp>

#include <Kokkos_Core.hpp>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>

namespace trident {

enum class MemoryCategory : int { parameters, gradients, optimizer_state, activations, communication };
inline constexpr int memory_category_count = 5;

inline const char* memory_category_name(MemoryCategory category) {
  switch (category) {
    case MemoryCategory::parameters:
      return "parameters";
    case MemoryCategory::gradients:
      return "gradients";
    case MemoryCategory::optimizer_state:
      return "optimizer_state";
    case MemoryCategory::activations:
      return "activations";
    case MemoryCategory::communication:
      return "communication";
  }
  return "unknown";
}

class MemoryLedger {
 public:
  // `bytes` more held for `category` (fewer when negative).
  void add(MemoryCategory category, std::int64_t bytes) {
    auto& held = m_held[index(category)];
    require(held + bytes >= 0, "trident::MemoryLedger: releasing ", -bytes, " bytes of ",
            memory_category_name(category), " but only ", held, " are held");
    held += bytes;
    note_peaks();
  }
  void release(MemoryCategory category, std::int64_t bytes) { add(category, -bytes); }
  // What a category holds now (activations: whatever the model's buffers hold).
  void set(MemoryCategory category, std::int64_t bytes) { add(category, bytes - m_held[index(category)]); }

  std::int64_t held(MemoryCategory category) const { return m_held[index(category)]; }
  std::int64_t peak(MemoryCategory category) const { return m_peak[index(category)]; }
  std::int64_t held_total() const {
    std::int64_t total = 0;
    for (auto bytes : m_held) total += bytes;
    return total;
  }
  // The most held at once (not the sum of the categories' peaks).
  std::int64_t peak_total() const { return m_peak_total; }
  // Peaks restart from what is held now (e.g. to see one training step's peak).
  void reset_peaks() {
    m_peak = m_held;
    m_peak_total = held_total();
  }

 private:
  static std::size_t index(MemoryCategory category) { return static_cast<std::size_t>(category); }
  void note_peaks() {
    for (std::size_t i = 0; i < m_held.size(); ++i) m_peak[i] = std::max(m_peak[i], m_held[i]);
    m_peak_total = std::max(m_peak_total, held_total());
  }

  std::array<std::int64_t, memory_category_count> m_held{};
  std::array<std::int64_t, memory_category_count> m_peak{};
  std::int64_t m_peak_total = 0;
};

// A table, one line per category and one for the total, bytes held now and at the peak:
//   memory (rank 0)      held MiB    peak MiB
//   parameters             0.107       0.107
inline std::string memory_report(const MemoryLedger& ledger, const std::string& title) {
  auto line = [](const char* name, double held, double peak) {
    char text[96];
    std::snprintf(text, sizeof text, "  %-16s %12.4f %12.4f\n", name, held / (1 << 20), peak / (1 << 20));
    return std::string(text);
  };
  char head[128];
  std::snprintf(head, sizeof head, "%-18s %12s %12s\n", title.c_str(), "held MiB", "peak MiB");
  std::string report = head;
  for (int c = 0; c < memory_category_count; ++c) {
    const auto category = static_cast<MemoryCategory>(c);
    report += line(memory_category_name(category), static_cast<double>(ledger.held(category)),
                   static_cast<double>(ledger.peak(category)));
  }
  return report + line("total", static_cast<double>(ledger.held_total()), static_cast<double>(ledger.peak_total()));
}

// The same as one JSON object: {"parameters":{"held":..,"peak":..},...,"total":{...}} in bytes.
inline std::string memory_report_json(const MemoryLedger& ledger) {
  std::string json = "{";
  auto entry = [&](const char* name, std::int64_t held, std::int64_t peak) {
    json += detail::concat("\"", name, "\":{\"held\":", held, ",\"peak\":", peak, "}");
  };
  for (int c = 0; c < memory_category_count; ++c) {
    const auto category = static_cast<MemoryCategory>(c);
    entry(memory_category_name(category), ledger.held(category), ledger.peak(category));
    json += ",";
  }
  entry("total", ledger.held_total(), ledger.peak_total());
  return json + "}";
}

// A View whose bytes are on a ledger for as long as this handle holds it. Drop every other
// copy of the View before the handle, or the ledger says freed what is still allocated.
template <class ViewType>
class TrackedView {
 public:
  TrackedView() = default;
  TrackedView(MemoryLedger& ledger, MemoryCategory category, ViewType view)
      : m_ledger(&ledger), m_category(category), m_view(std::move(view)) {
    m_ledger->add(m_category, bytes());
  }
  TrackedView(TrackedView&& other) noexcept
      : m_ledger(std::exchange(other.m_ledger, nullptr)),
        m_category(other.m_category),
        m_view(std::move(other.m_view)) {
    other.m_view = ViewType();
  }
  TrackedView& operator=(TrackedView&& other) noexcept {
    if (this != &other) {
      reset();
      m_ledger = std::exchange(other.m_ledger, nullptr);
      m_category = other.m_category;
      m_view = std::move(other.m_view);
      other.m_view = ViewType();
    }
    return *this;
  }
  TrackedView(const TrackedView&) = delete;
  TrackedView& operator=(const TrackedView&) = delete;
  ~TrackedView() { reset(); }

  const ViewType& view() const { return m_view; }
  std::int64_t bytes() const {
    return static_cast<std::int64_t>(m_view.span() * sizeof(typename ViewType::value_type));
  }
  // Drops the View and takes its bytes off the ledger.
  void reset() {
    if (m_ledger) m_ledger->release(m_category, bytes());
    m_ledger = nullptr;
    m_view = ViewType();
  }

 private:
  MemoryLedger* m_ledger = nullptr;
  MemoryCategory m_category = MemoryCategory::communication;
  ViewType m_view;
};

}  // namespace trident
