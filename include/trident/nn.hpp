#pragma once
// Models as specs of layers (nn::ModelSpec), instantiated for a scalar, an execution space, a
// tensor-parallel group and a pipeline stage (nn::Model).

#include <trident/nn/nn.hpp>
