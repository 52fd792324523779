// own_model's flags, parsed with CLI11 (see options.hpp).

#include "options.hpp"

#include "cli.hpp"

#include <mpi.h>

#include <cstdio>

bool parse_options(int argc, char** argv, Options& o) {
  trident_examples::CommandLine cli("own_model", "Trains your own model (an MLP or a transformer) in any layout.");
  using trident_examples::Range;
  cli.choice("--model", o.model, {"mlp", "transformer"},
             "mlp (regression) or transformer (tied head, repeats a token)");
  cli.number("--dp", o.dp, "data-parallel replicas", Range::at_least(1));
  cli.number("--tp", o.tp, "tensor-parallel ranks", Range::at_least(1));
  cli.number("--pp", o.pp, "pipeline stages", Range::at_least(1));
  cli.number("--zero", o.zero, "ZeRO stage", Range::between(0, 3));
  cli.number("--micro-batch", o.micro_batch, "samples per micro-batch (0: the default)", Range::at_least(0));
  cli.number("--steps", o.steps, "train until this step (a loaded run continues)", Range::at_least(0));
  cli.number("--lr", o.lr, "learning rate", Range::above(0));
  cli.choice("--dtype", o.dtype, {"fp32", "bf16", "fp16"},
             "the activations' type: bf16 or fp16 train in mixed precision (float parameters and checkpoints)");
  cli.text("--save", o.save, "write a checkpoint here at the end");
  cli.text("--load", o.load, "resume from this checkpoint (saved in any layout)");
  const bool run = cli.parse(argc, argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (!run && rank == 0) std::printf("%s", cli.usage().c_str());
  return run;
}

bool is_usage_error(const std::exception& error) {
  return dynamic_cast<const trident_examples::UsageError*>(&error) != nullptr;
}
