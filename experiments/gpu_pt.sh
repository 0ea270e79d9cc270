#!/usr/bin/env bash
# Third GPU lease: the white-box prompt-tuning cells of the medical CBP table that the CPU did
# not reach (gradients through the model on medqa_usmle's and pubmedqa's long inputs took
# 20 minutes a run on 2 cores).
#
#   1. studies/cbp/study.py run   white-box PT on medqa_usmle seeds 1-2 and pubmedqa
#      seeds 0-2, same SweepConfig as the CPU table; carry the CPU's medqa_usmle seed-0 run
#      folder so it is skipped. Results land in the CPU table's run folders.
#   2. the CPU's medqa_usmle PT seed 0 rerun on the GPU into a separate folder, as a
#      device check of the PT path (CPU: 25.5).
#
# Setup: experiments/gpu_setup.sh (wheels, model in parts). Usage, after the setup calls:
#   export PYTHONPATH=/tmp/site:$PWD; OUT=/some/dir bash experiments/gpu_pt.sh
# Outputs under $OUT: lease.log, runs.tgz (result.json of every PT run made).
OUT=${OUT:-/tmp/gpu_pt}
source "$(dirname "$0")/gpu_stages.sh"
touch "$OUT/.start"  # runs newer than this are the ones made here

stage "${RUN_LIMIT:-420}" python3 -m cbp_jax.cli study cbp run --tasks medqa_usmle,pubmedqa \
  --set domains=medical leave_one_out= methods=prompt_tuning
stage "${CHECK_LIMIT:-90}" python3 -m cbp_jax.cli study cbp run --tasks medqa_usmle --seeds 0 \
  --set domains=medical leave_one_out= methods=prompt_tuning out=checkpoints/cbp_gpu_pt
tar czf "$OUT/runs.tgz" $(find checkpoints/cbp_domains/runs checkpoints/cbp_gpu_pt/runs \
  -path '*prompt_tuning*' -name result.json -newer "$OUT/.start") 2>>"$LOG"
say "done"
