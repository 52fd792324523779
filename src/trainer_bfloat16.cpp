// trident::train_float: the Trainer of bfloat16 activations and float parameters (see
// trainer_float.cpp).
#include <trident/train/trainer_impl.hpp>

template class trident::train::Trainer<trident::bfloat16, Kokkos::DefaultExecutionSpace>;
