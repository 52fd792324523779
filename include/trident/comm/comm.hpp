#pragma once
// trident::comm: communicators, collectives and point-to-point transfers of Kokkos Views,
// nonblocking requests, the MPI and NCCL backends, traffic statistics, the cross-rank
// consistency check, failures agreed on by every rank, and files written by every rank at once.

#include <trident/comm/agreement.hpp>
#include <trident/comm/backend.hpp>
#include <trident/comm/collectives.hpp>
#include <trident/comm/communicator.hpp>
#include <trident/comm/consistency_check.hpp>
#include <trident/comm/file.hpp>
#include <trident/comm/gpu_aware.hpp>
#include <trident/comm/idle_barrier.hpp>
#include <trident/comm/mpi_datatype.hpp>
#include <trident/comm/point_to_point.hpp>
#include <trident/comm/reduce_op.hpp>
#include <trident/comm/request.hpp>
#include <trident/comm/statistics.hpp>
#include <trident/comm/view_buffer.hpp>
