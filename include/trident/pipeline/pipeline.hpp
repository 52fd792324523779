#pragma once
// trident::pipeline: pipeline-parallel schedules as data — the generators, the validator,
// a timing simulator with the analytic bubble formulas, the stage partitioner and Chrome
// traces of timelines.

#include <trident/pipeline/action.hpp>
#include <trident/pipeline/activation_memory.hpp>
#include <trident/pipeline/bubble.hpp>
#include <trident/pipeline/communication.hpp>
#include <trident/pipeline/partition.hpp>
#include <trident/pipeline/schedule.hpp>
#include <trident/pipeline/schedules.hpp>
#include <trident/pipeline/simulate.hpp>
#include <trident/pipeline/trace.hpp>
#include <trident/pipeline/validate.hpp>
