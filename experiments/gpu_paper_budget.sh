#!/usr/bin/env bash
# One GPU lease for the paper-budget tables (issue 23): every missing SmolLM2 cell of
# experiments/paper_budget.py in ONE process (model loaded once, persistent compile cache),
# under one time limit, then whatever did not finish is stashed so the CPU (or the next
# lease) resumes it. Each finished run is appended to the records the moment it ends, so a
# limit that cuts the stage short loses only the run in progress (and that one is stashed).
#
#   OUT=/some/dir bash experiments/gpu_paper_budget.sh
#
# Setup first, as for gpu_lease.sh (experiments/gpu_setup.sh: wheels, GGUF parts, join).
# Outputs under $OUT: lease.log and paper_budget.tgz (the records, the regenerated report
# and curves, the stashes). Unpack it in the repository root here and commit: the records
# say device "gpu", and the report lists the device of every run's timing.
# PB_ONLY narrows the cells (e.g. PB_ONLY=sst2), PB_LIMIT is the stage's seconds.
OUT=${OUT:-/tmp/gpu_lease}
source "$(dirname "$0")/gpu_stages.sh"

stage "${PB_LIMIT:-480}" python3 experiments/paper_budget.py run --only "${PB_ONLY:-}"
python3 experiments/paper_budget.py stash >>"$LOG" 2>&1
python3 experiments/paper_budget.py table >>"$LOG" 2>&1
tar czf "$OUT/paper_budget.tgz" experiments/results/paper_budget.md \
  experiments/results/paper_budget_runs.jsonl experiments/results/paper_budget_*_curve.png \
  $(ls -d experiments/results/paper_budget_in_flight 2>/dev/null) 2>>"$LOG"
say "done"
