#pragma once
// The whole of trident in one include.

#include <trident/core/compat.hpp>
#include <trident/core/error.hpp>
#include <trident/core/half_precision.hpp>
#include <trident/core/memory_accounting.hpp>
#include <trident/core/parameter_store.hpp>
#include <trident/core/profiling.hpp>
#include <trident/core/random.hpp>
#include <trident/core/unit_hooks.hpp>
#include <trident/core/version.hpp>

#include <trident/comm/comm.hpp>
#include <trident/mesh/process_mesh.hpp>

#include <trident/ops/ops.hpp>
#include <trident/optim/adamw.hpp>
#include <trident/optim/clip.hpp>
#include <trident/optim/loss_scaler.hpp>
#include <trident/optim/lr_schedule.hpp>

#include <trident/io/parallel_safetensors_writer.hpp>
#include <trident/io/safetensors.hpp>
#include <trident/io/shard_pieces.hpp>
#include <trident/io/token_file.hpp>

#include <trident/data/batches.hpp>
#include <trident/data/synthetic.hpp>
#include <trident/data/text.hpp>
#include <trident/data/token_files.hpp>

#include <trident/pipeline/pipeline.hpp>

#include <trident/tensor_parallel/group.hpp>
#include <trident/tensor_parallel/mappings.hpp>
#include <trident/tensor_parallel/vocab_parallel_cross_entropy.hpp>

#include <trident/data_parallel/data_parallel.hpp>

#include <trident/ops/gemm_peak.hpp>

#include <trident/nn/nn.hpp>
#include <trident/train.hpp>
#include <trident/train/choose_layout.hpp>

#include <trident/gpt2/batch.hpp>
#include <trident/gpt2/checkpoint.hpp>
#include <trident/gpt2/model.hpp>
#include <trident/gpt2/spec.hpp>
