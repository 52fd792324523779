#pragma once
// What a program that trains its own model includes: model specs (nn::ModelSpec), the one
// training driver (train::Trainer, train::Layout) and the communicators they are built from.
// No GPT-2, no analysis tools; nn::Model and the layers themselves are in <trident/nn.hpp>.

#include <trident/comm/agreement.hpp>
#include <trident/comm/communicator.hpp>
#include <trident/nn/spec.hpp>
#include <trident/train/layout.hpp>
#include <trident/train/trainer.hpp>
