// trident::train_float: the Trainer of float16 activations and float parameters (see
// trainer_float.cpp).
#include <trident/train/trainer_impl.hpp>

template class trident::train::Trainer<trident::float16, Kokkos::DefaultExecutionSpace>;
