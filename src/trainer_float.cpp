// trident::train_float: the Trainers of float parameters on the default execution space, each
// compiled once for every program that links it (see the end of train/trainer.hpp); one
// translation unit each, so that they build in parallel. This one: float activations.
#include <trident/train/trainer_impl.hpp>

template class trident::train::Trainer<float, Kokkos::DefaultExecutionSpace>;
