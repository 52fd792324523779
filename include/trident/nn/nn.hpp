#pragma once
// Users' own models: a spec of layers (spec.hpp), instantiated for a Scalar, an execution
// space and a layout (model.hpp), with its tensors visible as the one-rank model's
// (global_tensors.hpp).

#include <trident/nn/attention.hpp>
#include <trident/nn/build.hpp>
#include <trident/nn/embedding.hpp>
#include <trident/nn/global_tensors.hpp>
#include <trident/nn/layer.hpp>
#include <trident/nn/layer_norm.hpp>
#include <trident/nn/linear.hpp>
#include <trident/nn/model.hpp>
#include <trident/nn/parameters.hpp>
#include <trident/nn/pointwise.hpp>
#include <trident/nn/residual.hpp>
#include <trident/nn/sequence.hpp>
#include <trident/nn/spec.hpp>
#include <trident/nn/tied_head.hpp>
