#pragma once
// What a program that trains its own model includes: the model specs (nn), the one training
// driver and its checkpoints, and the communicators they are built from. No GPT-2, no analysis
// tools.

#include <trident/comm/communicator.hpp>
#include <trident/nn.hpp>
#include <trident/train/checkpoint.hpp>
#include <trident/train/layout.hpp>
#include <trident/train/trainer.hpp>
