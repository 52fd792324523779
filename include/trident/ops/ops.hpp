#pragma once
// The one-rank operators: forward/backward pairs, the only numerical kernels of trident.

#include <trident/ops/activations.hpp>
#include <trident/ops/attention.hpp>
#include <trident/ops/bias_activation.hpp>
#include <trident/ops/convert.hpp>
#include <trident/ops/cross_entropy.hpp>
#include <trident/ops/embedding.hpp>
#include <trident/ops/gelu.hpp>
#include <trident/ops/layernorm.hpp>
#include <trident/ops/linear.hpp>
#include <trident/ops/matmul.hpp>
#include <trident/ops/mse.hpp>
#include <trident/ops/reduction.hpp>
#include <trident/ops/residual.hpp>
