#pragma once
// The one executor of every schedule: each rank walks its action list in order and calls its
// model chunks for the compute passes, moving activations and gradients between stages with
// nonblocking point-to-point transfers tagged by message_tag().
//
// A model chunk (a stage) is any object with
//   double stage_forward(int micro_batch, const View& input, const View& output);
//   void stage_backward(int micro_batch, const View& output_gradient, const View& input_gradient);
//   void stage_backward_input(int micro_batch, const View& output_gradient, const View& input_gradient);
//   void stage_backward_weight(int micro_batch);
// where View is Executor::buffer_view, [rows, cols] (what crosses a stage boundary). The first
// stage gets an empty input and the last an empty output; the last stage's forward returns its
// share of the loss (the others return 0) and its backward gets an empty output gradient; the
// first stage's backward gets an empty input gradient. A chunk must not keep the views it is
// handed: they go back to the executor's buffers when the call returns. Only schedules with
// backward_input / backward_weight passes (zb) call the split backward.
//
// Transfers: a receive is posted `receive_lookahead` compute passes ahead and waited for right
// before the pass that consumes it; a send is posted as soon as its pass has produced the data,
// and its buffer is reused only once the send has completed. Consecutive stages on the same
// rank (p = 1 with v > 1) hand the data over without a transfer.

#include <trident/comm/agreement.hpp>
#include <trident/comm/allgather.hpp>
#include <trident/comm/allreduce.hpp>
#include <trident/comm/broadcast.hpp>
#include <trident/comm/communicator.hpp>
#include <trident/comm/point_to_point.hpp>
#include <trident/comm/request.hpp>
#include <trident/core/compat.hpp>
#include <trident/core/error.hpp>
#include <trident/core/profiling.hpp>
#include <trident/pipeline/action.hpp>
#include <trident/pipeline/schedule.hpp>
#include <trident/pipeline/trace.hpp>
#include <trident/pipeline/validate.hpp>

#include <Kokkos_Core.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace trident::pipeline {

struct ExecutorSettings {
  // Receives are posted once the rank is within this many compute passes of the pass that
  // consumes them, so the data can arrive while it computes; 0 posts each at its own action.
  int receive_lookahead = 2;
  // Fence after each compute pass, so the trace shows when the work finished rather than when
  // its launch returned (free on host spaces).
  bool fence_passes = true;
};

// What crosses one cut between two stages: rows x cols of the activation (and its gradient).
struct BoundaryShape {
  std::size_t rows = 0, cols = 0;
};

namespace detail {

// FNV-1a: the same number for the same schedule on every rank and every build.
inline std::int64_t schedule_fingerprint(const Schedule& schedule) {
  std::uint64_t hash = 1469598103934665603ull;
  for (unsigned char c : to_string(schedule, true)) hash = (hash ^ c) * 1099511628211ull;
  return static_cast<std::int64_t>(hash >> 1);
}

}  // namespace detail

template <class Scalar, class ExecutionSpace>
class Executor {
 public:
  using memory_space = typename ExecutionSpace::memory_space;
  using buffer_view = Kokkos::View<Scalar**, Kokkos::LayoutRight, memory_space>;

  // Collective over `pp`, whose rank r runs the schedule's list r; every rank passes the same
  // schedule and shapes (checked). cuts[s] is the shape [rows, cols] of what crosses from stage
  // s to stage s + 1 (p * v - 1 cuts; a model's widths may differ from cut to cut).
  Executor(const ExecutionSpace& space, const comm::Communicator& pp, Schedule schedule,
           std::vector<BoundaryShape> cuts, ExecutorSettings settings = {})
      : m_space(space), m_schedule(std::move(schedule)), m_cuts(std::move(cuts)), m_settings(settings) {
    ScopedRegion region("trident::pipeline::Executor");
    const char* op = "trident::pipeline::Executor";
    comm::agree_on_failure(pp, op, [&] {
      require_argument(pp.size() == m_schedule.ranks, op, ": schedule '", m_schedule.name,
                       "' is for p = ", m_schedule.ranks, " ranks but the pipeline communicator '", pp.name(), "' has ",
                       pp.size());
      validate(m_schedule);
      // message_tag() < 2 m v must stay below the smallest MPI_TAG_UB the standard allows.
      require_argument(2 * static_cast<std::int64_t>(m_schedule.micro_batches) * m_schedule.chunks <= 32767, op,
                       ": m = ", m_schedule.micro_batches, " micro-batches of v = ", m_schedule.chunks,
                       " chunks need tags up to ", 2 * m_schedule.micro_batches * m_schedule.chunks,
                       ", more than MPI guarantees (32767)");
      require_argument(static_cast<int>(m_cuts.size()) == m_schedule.stages() - 1, op, ": ", m_cuts.size(),
                       " stage boundary shapes for the ", m_schedule.stages() - 1, " cuts between ",
                       m_schedule.stages(), " stages");
      for (std::size_t s = 0; s < m_cuts.size(); ++s)
        require_argument(m_cuts[s].rows >= 1 && m_cuts[s].cols >= 1, op, ": the boundary after stage ", s, " is ",
                         m_cuts[s].rows, " x ", m_cuts[s].cols, "; both must be at least 1");
      require_argument(settings.receive_lookahead >= 0, op, ": receive_lookahead must be >= 0, got ",
                       settings.receive_lookahead);
    });
    require_same_everywhere(pp);
    m_comm = pp.duplicate(pp.label().empty() ? "pp" : pp.label());  // own message space for the tags
    m_rank = m_comm.rank();
  }

  // Every cut of the same shape rows x cols (GPT-2: N x C, N / tp rows with sequence parallelism).
  Executor(const ExecutionSpace& space, const comm::Communicator& pp, Schedule schedule, std::size_t rows,
           std::size_t cols, ExecutorSettings settings = {})
      : Executor(space, pp, schedule,
                 std::vector<BoundaryShape>(static_cast<std::size_t>(std::max(schedule.stages() - 1, 0)),
                                            BoundaryShape{rows, cols}),
                 settings) {}

  const Schedule& schedule() const { return m_schedule; }
  const comm::Communicator& communicator() const { return m_comm; }
  int rank() const { return m_rank; }

  // Called after each action of this rank (e.g. to follow the memory of all chunks together).
  void set_after_action(std::function<void(const Action&)> hook) { m_after_action = std::move(hook); }

  // One step: chunks[c] is this rank's chunk c, global stage c * p + rank. Collective over the
  // pipeline. Returns the sum of the last stage's forward results (the loss), on every rank.
  template <class Stage>
  double run(const std::vector<Stage*>& chunks) {
    ScopedRegion region("trident::pipeline::Executor::run");
    comm::agree_on_failure(m_comm, "trident::pipeline::Executor::run", [&] {
      require_argument(static_cast<int>(chunks.size()) == m_schedule.chunks, "trident::pipeline::Executor::run: '",
                       m_schedule.name, "' runs v = ", m_schedule.chunks, " model chunks per rank but rank ", m_rank,
                       " passed ", chunks.size());
      for (std::size_t c = 0; c < chunks.size(); ++c)
        require_argument(chunks[c] != nullptr, "trident::pipeline::Executor::run: chunk ", c, " of rank ", m_rank,
                         " is null");
    });
    m_trace.clear();
    m_actions.clear();
    m_loss = 0;
    m_comm.barrier();  // a common origin for the ranks' traces
    m_start = Clock::now();
    const auto& list = m_schedule.actions_of(m_rank);
    std::size_t posted_until = 0;
    for (std::size_t k = 0; k < list.size(); ++k) {
      posted_until = post_receives_ahead(list, k, posted_until);
      const Action& action = list[k];
      double begin = now_us();  // a pass starts once its input is here: waits are traced apart
      switch (action.type) {
        case ActionType::forward:
          begin = forward(*chunks[static_cast<std::size_t>(action.chunk)], action);
          break;
        case ActionType::backward:
        case ActionType::backward_input:
          begin = backward(*chunks[static_cast<std::size_t>(action.chunk)], action);
          break;
        case ActionType::backward_weight:
          chunks[static_cast<std::size_t>(action.chunk)]->stage_backward_weight(action.micro_batch);
          break;
        case ActionType::send_forward:
        case ActionType::send_backward:
          post_send(action);
          break;
        case ActionType::recv_forward:
        case ActionType::recv_backward:
          break;  // posted ahead; traced while the pass that consumes it waits for it
      }
      if (is_compute(action.type) && m_settings.fence_passes)
        compat::fence(m_space, "trident::pipeline::Executor::pass");
      if (!is_recv(action.type)) record(action, begin, now_us());
      reclaim_finished_sends();
      if (m_after_action) m_after_action(action);
    }
    for (auto& send : m_sends) send.request.wait();
    for (auto& send : m_sends) give_back(send.buffer);
    m_sends.clear();
    require(m_posted.empty() && m_handoffs.empty() && m_outbox.empty(), "trident::pipeline::Executor::run: rank ",
            m_rank, " ended the step with ", m_posted.size(), " receives, ", m_handoffs.size(), " hand-overs and ",
            m_outbox.size(), " sends left over (internal error)");
    return share_loss();
  }

  // This rank's events of the last step, in microseconds from its start (after a barrier).
  const std::vector<TraceEvent>& trace() const { return m_trace; }

  // Every rank's events of the last step, on every rank. Collective.
  std::vector<TraceEvent> gather_trace() const {
    ScopedRegion region("trident::pipeline::Executor::gather_trace");
    constexpr int fields = 6;  // type, micro-batch, chunk, peer, start, end
    const Kokkos::DefaultHostExecutionSpace host;
    Kokkos::View<double*, Kokkos::HostSpace> mine("trident::pipeline::trace", m_actions.size() * fields);
    for (std::size_t e = 0; e < m_actions.size(); ++e) {
      const Action& a = m_actions[e];
      const double row[fields] = {static_cast<double>(static_cast<int>(a.type)),
                                  static_cast<double>(a.micro_batch),
                                  static_cast<double>(a.chunk),
                                  static_cast<double>(a.peer),
                                  m_trace[e].start_us,
                                  m_trace[e].end_us};
      for (int f = 0; f < fields; ++f) mine(e * fields + static_cast<std::size_t>(f)) = row[f];
    }
    Kokkos::View<int*, Kokkos::HostSpace> counts("trident::pipeline::trace_counts",
                                                 static_cast<std::size_t>(m_comm.size()));
    Kokkos::View<int*, Kokkos::HostSpace> count("trident::pipeline::trace_count", 1);
    count(0) = static_cast<int>(mine.size());
    comm::allgather(host, m_comm, count, counts);
    std::vector<int> sizes(counts.data(), counts.data() + counts.size());
    std::size_t total = 0;
    for (int n : sizes) total += static_cast<std::size_t>(n);
    Kokkos::View<double*, Kokkos::HostSpace> all("trident::pipeline::trace_all", total);
    comm::allgatherv(host, m_comm, mine, all, sizes);
    std::vector<TraceEvent> events;
    std::size_t at = 0;
    for (int rank = 0; rank < m_comm.size(); ++rank) {
      for (int e = 0; e < sizes[static_cast<std::size_t>(rank)] / fields; ++e, at += fields) {
        const Action a{static_cast<ActionType>(static_cast<int>(all(at))), static_cast<int>(all(at + 1)),
                       static_cast<int>(all(at + 2)), static_cast<int>(all(at + 3))};
        events.push_back(
            TraceEvent{to_string(a, m_schedule.chunks > 1), rank, all(at + 4), all(at + 5), to_string(a.type)});
      }
    }
    return events;
  }

  // Transfer buffers allocated so far (each of its cut's shape); they are reused from step to step.
  std::size_t buffers() const { return m_allocated; }
  std::size_t buffer_bytes() const { return m_allocated_elements * sizeof(Scalar); }

 private:
  using Clock = std::chrono::steady_clock;
  enum Direction : int { activation = 0, gradient = 1 };
  using Key = std::tuple<int, int, int>;  // direction, stage that consumes or sends it, micro-batch

  struct PendingSend {
    comm::Request request;
    buffer_view buffer;
  };
  struct PostedReceive {
    comm::Request request;
    buffer_view buffer;
    double posted_us;
  };

  // Every rank must run the same schedule on the same boundary shapes.
  void require_same_everywhere(const comm::Communicator& pp) const {
    std::uint64_t shapes = 1469598103934665603ull;
    for (const auto& cut : m_cuts) shapes = (shapes ^ (cut.rows * 1000003 + cut.cols)) * 1099511628211ull;
    const std::int64_t local[4] = {m_schedule.micro_batches, m_schedule.chunks,
                                   detail::schedule_fingerprint(m_schedule), static_cast<std::int64_t>(shapes >> 1)};
    Kokkos::View<std::int64_t*, Kokkos::HostSpace> low("trident::pipeline::agree", 4),
        high("trident::pipeline::agree", 4);
    for (int i = 0; i < 4; ++i) low(i) = high(i) = local[i];
    const Kokkos::DefaultHostExecutionSpace host;
    comm::allreduce(host, pp, low, comm::ReduceOp::min);
    comm::allreduce(host, pp, high, comm::ReduceOp::max);
    bool same = true;
    for (int i = 0; i < 4; ++i) same = same && low(i) == high(i);
    require_argument(same, "trident::pipeline::Executor: the ranks of the pipeline communicator '", pp.name(),
                     "' passed different schedules or stage boundary shapes (this rank: '", m_schedule.name,
                     "' m = ", m_schedule.micro_batches, " v = ", m_schedule.chunks, ", ", describe_cuts(), ")");
  }

  std::string describe_cuts() const {
    std::string text = m_cuts.empty() ? "no cuts" : "cuts";
    for (const auto& cut : m_cuts) text += " " + std::to_string(cut.rows) + "x" + std::to_string(cut.cols);
    return text;
  }

  double now_us() const { return std::chrono::duration<double, std::micro>(Clock::now() - m_start).count(); }

  void record(const Action& action, double begin, double end) {
    m_trace.push_back(TraceEvent{to_string(action, m_schedule.chunks > 1), m_rank, begin, end, to_string(action.type)});
    m_actions.resize(m_trace.size());
    m_actions.back() = action;
  }

  // A buffer of the shape of the cut after stage `cut`; buffers of one shape serve every cut of it.
  buffer_view take_buffer(int cut) {
    const BoundaryShape& shape = m_cuts.at(static_cast<std::size_t>(cut));
    auto& free = m_free[{shape.rows, shape.cols}];
    if (!free.empty()) {
      buffer_view buffer = free.back();
      free.pop_back();
      return buffer;
    }
    ++m_allocated;
    m_allocated_elements += shape.rows * shape.cols;
    return buffer_view(Kokkos::view_alloc(Kokkos::WithoutInitializing, std::string("trident::pipeline::transfer")),
                       shape.rows, shape.cols);
  }

  void give_back(const buffer_view& buffer) {
    if (buffer.size() != 0) m_free[{buffer.extent(0), buffer.extent(1)}].push_back(buffer);
  }

  // Posts the receives among the actions from k to the lookahead-th compute pass at or after k.
  std::size_t post_receives_ahead(const std::vector<Action>& list, std::size_t k, std::size_t from) {
    std::size_t end = k;
    for (int passes = 0; end < list.size() && (end == k || passes < m_settings.receive_lookahead); ++end)
      if (is_compute(list[end].type)) ++passes;
    for (std::size_t i = std::max(from, k); i < end; ++i)
      if (is_recv(list[i].type)) post_receive(list[i]);
    return std::max(from, end);
  }

  void post_receive(const Action& recv) {
    const int tag = message_tag(m_schedule, m_rank, recv);
    if (m_posted.count(tag) != 0) return;
    // An activation for stage s crossed the cut before it; a gradient for stage s, the cut after it.
    const int stage = m_schedule.stage_of(m_rank, recv);
    buffer_view buffer = take_buffer(recv.type == ActionType::recv_forward ? stage - 1 : stage);
    PostedReceive posted{comm::irecv(m_space, m_comm, buffer, recv.peer, tag), buffer, now_us()};
    m_posted.emplace(tag, std::move(posted));
  }

  // The data a pass consumes from a receive: waits for it, and traces the wait.
  buffer_view wait_receive(const Action& recv) {
    const int tag = message_tag(m_schedule, m_rank, recv);
    if (m_posted.count(tag) == 0) post_receive(recv);
    auto found = m_posted.find(tag);
    const double begin = now_us();
    found->second.request.wait();
    record(recv, begin, now_us());
    buffer_view buffer = found->second.buffer;
    m_posted.erase(found);
    return buffer;
  }

  buffer_view take_handoff(int direction, int stage, int micro_batch) {
    const auto found = m_handoffs.find(Key{direction, stage, micro_batch});
    require(found != m_handoffs.end(), "trident::pipeline::Executor: stage ", stage, " has no local ",
            direction == activation ? "activation" : "gradient", " of micro-batch ", micro_batch, " (internal error)");
    buffer_view buffer = found->second;
    m_handoffs.erase(found);
    return buffer;
  }

  // Where a pass's product goes: to the next pass on this rank, or out by the send that follows.
  void deliver(int direction, int from_stage, int to_stage, int micro_batch, const buffer_view& buffer) {
    if (m_schedule.rank_of_stage(to_stage) == m_rank) {
      m_handoffs[Key{direction, to_stage, micro_batch}] = buffer;
    } else {
      m_outbox[Key{direction, from_stage, micro_batch}] = buffer;
    }
  }

  // A forward pass; returns when it started, after its input arrived.
  template <class Stage>
  double forward(Stage& chunk, const Action& action) {
    const int stage = m_schedule.stage_of(m_rank, action), last = m_schedule.stages() - 1;
    buffer_view input;
    if (stage > 0) {
      const int previous = m_schedule.rank_of_stage(stage - 1);
      input = previous == m_rank
                  ? take_handoff(activation, stage, action.micro_batch)
                  : wait_receive(Action{ActionType::recv_forward, action.micro_batch, action.chunk, previous});
    }
    buffer_view output = stage < last ? take_buffer(stage) : buffer_view();
    const double begin = now_us();
    const double value = chunk.stage_forward(action.micro_batch, input, output);
    if (stage == last) m_loss += value;
    give_back(input);
    if (stage < last) deliver(activation, stage, stage + 1, action.micro_batch, output);
    return begin;
  }

  // A backward or backward_input pass; returns when it started, after its input arrived.
  template <class Stage>
  double backward(Stage& chunk, const Action& action) {
    const int stage = m_schedule.stage_of(m_rank, action), last = m_schedule.stages() - 1;
    buffer_view output_gradient;
    if (stage < last) {
      const int next = m_schedule.rank_of_stage(stage + 1);
      output_gradient = next == m_rank
                            ? take_handoff(gradient, stage, action.micro_batch)
                            : wait_receive(Action{ActionType::recv_backward, action.micro_batch, action.chunk, next});
    }
    buffer_view input_gradient = stage > 0 ? take_buffer(stage - 1) : buffer_view();
    const double begin = now_us();
    if (action.type == ActionType::backward) {
      chunk.stage_backward(action.micro_batch, output_gradient, input_gradient);
    } else {
      chunk.stage_backward_input(action.micro_batch, output_gradient, input_gradient);
    }
    give_back(output_gradient);
    if (stage > 0) deliver(gradient, stage, stage - 1, action.micro_batch, input_gradient);
    return begin;
  }

  void post_send(const Action& send) {
    const int direction = send.type == ActionType::send_forward ? activation : gradient;
    const Key key{direction, m_schedule.stage_of(m_rank, send), send.micro_batch};
    const auto found = m_outbox.find(key);
    require(found != m_outbox.end(), "trident::pipeline::Executor: ", to_string(send), " on rank ", m_rank,
            " has nothing to send (internal error)");
    const int tag = message_tag(m_schedule, m_rank, send);
    m_sends.push_back(PendingSend{comm::isend(m_space, m_comm, found->second, send.peer, tag), found->second});
    m_outbox.erase(found);
  }

  // A buffer whose send has completed can take new data.
  void reclaim_finished_sends() {
    for (auto it = m_sends.begin(); it != m_sends.end();) {
      if (it->request.test()) {
        give_back(it->buffer);
        it = m_sends.erase(it);
      } else {
        ++it;
      }
    }
  }

  // The last stage's loss, from the rank that holds it to every rank.
  double share_loss() {
    const Kokkos::DefaultHostExecutionSpace host;
    Kokkos::View<double*, Kokkos::HostSpace> loss("trident::pipeline::loss", 1);
    loss(0) = m_loss;
    if (m_comm.size() > 1) comm::broadcast(host, m_comm, loss, m_schedule.rank_of_stage(m_schedule.stages() - 1));
    return loss(0);
  }

  ExecutionSpace m_space;
  Schedule m_schedule;
  std::vector<BoundaryShape> m_cuts;  // m_cuts[s]: from stage s to stage s + 1
  ExecutorSettings m_settings;
  comm::Communicator m_comm;
  int m_rank = 0;

  std::map<std::pair<std::size_t, std::size_t>, std::vector<buffer_view>> m_free;  // by shape, ready for new data
  std::size_t m_allocated = 0, m_allocated_elements = 0;
  std::map<int, PostedReceive> m_posted;  // by tag
  std::map<Key, buffer_view> m_handoffs;  // products for a pass on this rank
  std::map<Key, buffer_view> m_outbox;    // products waiting for their send action
  std::list<PendingSend> m_sends;

  std::function<void(const Action&)> m_after_action;
  Clock::time_point m_start;
  double m_loss = 0;
  std::vector<TraceEvent> m_trace;
  std::vector<Action> m_actions;  // the action of each trace event
};

}  // namespace trident::pipeline
