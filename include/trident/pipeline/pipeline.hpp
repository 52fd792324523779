#pragma once
// trident::pipeline: pipeline-parallel schedules as data — the generators, the validator,
// a timing simulator (on cores of their own or shared) with the analytic bubble formulas, the
// stage partitioner and Chrome traces of timelines — and the executor that runs any schedule
// over MPI, with the activation pool, the tied-gradient sum and the gradient norm across stages.

#include <trident/pipeline/action.hpp>
#include <trident/pipeline/activation_memory.hpp>
#include <trident/pipeline/activation_pool.hpp>
#include <trident/pipeline/bubble.hpp>
#include <trident/pipeline/communication.hpp>
#include <trident/pipeline/executor.hpp>
#include <trident/pipeline/measured_bubble.hpp>
#include <trident/pipeline/partition.hpp>
#include <trident/pipeline/schedule.hpp>
#include <trident/pipeline/schedules.hpp>
#include <trident/pipeline/simulate.hpp>
#include <trident/pipeline/simulate_shared.hpp>
#include <trident/pipeline/tied_gradients.hpp>
#include <trident/pipeline/trace.hpp>
#include <trident/pipeline/validate.hpp>
