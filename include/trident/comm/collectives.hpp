#pragma once
// Every collective over Kokkos Views.

#include <trident/comm/allgather.hpp>
#include <trident/comm/allreduce.hpp>
#include <trident/comm/alltoall.hpp>
#include <trident/comm/broadcast.hpp>
#include <trident/comm/reduce_scatter.hpp>
