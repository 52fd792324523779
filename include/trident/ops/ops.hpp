#pragma once
// The one-rank operators: forward/backward pairs, the only numerical kernels of trident.
// Each takes views of float or double, or bfloat16/float16 activations: those are computed in
// float (compute_t) and rounded once when stored, so a 16-bit result is the float operator's
// on the same values, rounded (statistics, weight gradients and attention buffers may be float
// views beside them).

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
