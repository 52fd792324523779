#pragma once
// One step of a pipeline schedule: a compute pass or a point-to-point transfer of one
// micro-batch for one model chunk. A schedule is a list of these per rank.
//
// Stages are numbered globally. With p ranks and v model chunks per rank, rank r holds the
// stages r, r + p, r + 2p, ... (Megatron's interleaved assignment): chunk c of rank r is the
// global stage c * p + r. Without interleaving (v = 1) the stage is the rank.

#include <cstdint>
#include <string>

namespace trident::pipeline {

enum class ActionType : std::uint8_t {
  forward,          // F: the stage's forward pass
  backward,         // B: the full backward pass, input and weight gradients together
  backward_input,   // Bi: gradient of the stage's input only (zero-bubble split)
  backward_weight,  // W: gradient of the stage's weights only (zero-bubble split)
  send_forward,     // the stage's output activation to the next stage
  recv_forward,     // the stage's input activation from the previous stage
  send_backward,    // the gradient of the stage's input to the previous stage
  recv_backward,    // the gradient of the stage's output from the next stage
};

struct Action {
  ActionType type = ActionType::forward;
  int micro_batch = 0;
  int chunk = 0;  // model chunk on this rank (the virtual stage); global stage = chunk * p + rank
  int peer = -1;  // the other rank of a send or receive; -1 for compute actions

  friend bool operator==(const Action& a, const Action& b) {
    return a.type == b.type && a.micro_batch == b.micro_batch && a.chunk == b.chunk && a.peer == b.peer;
  }
  friend bool operator!=(const Action& a, const Action& b) { return !(a == b); }
};

// A compute pass of one micro-batch on one chunk (a compute action has no peer).
inline Action compute(ActionType type, int micro_batch, int chunk = 0) {
  return Action{type, micro_batch, chunk, -1};
}

inline bool is_compute(ActionType type) {
  return type == ActionType::forward || type == ActionType::backward || type == ActionType::backward_input ||
         type == ActionType::backward_weight;
}
inline bool is_communication(ActionType type) {
  return !is_compute(type);
}
inline bool is_send(ActionType type) {
  return type == ActionType::send_forward || type == ActionType::send_backward;
}
inline bool is_recv(ActionType type) {
  return type == ActionType::recv_forward || type == ActionType::recv_backward;
}

// The passes that produce the gradient a stage hands to its previous stage.
inline bool computes_input_gradient(ActionType type) {
  return type == ActionType::backward || type == ActionType::backward_input;
}

inline const char* to_string(ActionType type) {
  switch (type) {
    case ActionType::forward:
      return "forward";
    case ActionType::backward:
      return "backward";
    case ActionType::backward_input:
      return "backward_input";
    case ActionType::backward_weight:
      return "backward_weight";
    case ActionType::send_forward:
      return "send_forward";
    case ActionType::recv_forward:
      return "recv_forward";
    case ActionType::send_backward:
      return "send_backward";
    case ActionType::recv_backward:
      return "recv_backward";
  }
  return "unknown";
}

// The short letters of schedule tables: F, B, Bi, W for compute; sF/rF/sB/rB for transfers.
inline const char* short_name(ActionType type) {
  switch (type) {
    case ActionType::forward:
      return "F";
    case ActionType::backward:
      return "B";
    case ActionType::backward_input:
      return "Bi";
    case ActionType::backward_weight:
      return "W";
    case ActionType::send_forward:
      return "sF";
    case ActionType::recv_forward:
      return "rF";
    case ActionType::send_backward:
      return "sB";
    case ActionType::recv_backward:
      return "rB";
  }
  return "?";
}

// "F3" (one chunk per rank) or "F3c1" (micro-batch 3 of chunk 1); transfers add the peer:
// "sF3>2" sends to rank 2, "rB3<2" receives from rank 2.
inline std::string to_string(const Action& action, bool show_chunk = false) {
  std::string text = short_name(action.type) + std::to_string(action.micro_batch);
  if (show_chunk) text += "c" + std::to_string(action.chunk);
  if (is_send(action.type)) text += ">" + std::to_string(action.peer);
  if (is_recv(action.type)) text += "<" + std::to_string(action.peer);
  return text;
}

}  // namespace trident::pipeline
