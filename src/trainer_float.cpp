// trident::train_float: the float Trainer on the default execution space, compiled once for
// every program that links it (see the end of train/trainer.hpp).
#include <trident/train/trainer_impl.hpp>

template class trident::train::Trainer<float, Kokkos::DefaultExecutionSpace>;
