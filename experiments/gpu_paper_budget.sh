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
# PB_ONLY narrows the cells (e.g. PB_ONLY=sst2), PB_LIMIT is the stage's seconds, PB_ARGS
# selects another table, e.g. PB_ARGS="--model gemma3-270m --columns zero_shot,bbt,cbp_z0,cbp"
# (the model set up by `gpu_setup.sh gemma`).
#
# How it ran on 2026-12-04 for gemma3-270m (one H200, 15-minute lease, 850 s used): the
# tracked tree is 47 MiB, so for the calls the unneeded tracked paths (other tasks' data,
# SmolLM2 generators, tests, other results) were un-indexed and excluded, leaving 19 MiB, and
# the GGUF went in six parts (33 + 5 x 42 MiB) with the wheels in the first call; each part
# call took ~5 s. The image's transformers 5.17 cannot convert a gemma3 GGUF tokenizer
# (KeyError 'gemma3'): carry the transformers 5.24 wheel too. Then 480 s ran six 8000-call
# runs (1.5 min each, ~42 s of it compiling); a second call of 150 s (records first restored
# from the first call's tarball by hand, which the script now does itself) finished one more
# and stashed the next.
OUT=${OUT:-/tmp/gpu_lease}
source "$(dirname "$0")/gpu_stages.sh"
read -r -a ARGS <<<"${PB_ARGS:-}"
# Each call re-copies the tracked tree, records included: a later call of the same lease first
# takes back what the earlier one recorded (records are append-only, so this is a superset).
LAST=/tmp/paper_budget_last.tgz
[ -f "$LAST" ] && tar xzf "$LAST" && say "restored the records of an earlier call"

stage "${PB_LIMIT:-480}" python3 experiments/paper_budget.py run --only "${PB_ONLY:-}" "${ARGS[@]}"
python3 experiments/paper_budget.py stash "${ARGS[@]}" >>"$LOG" 2>&1
python3 experiments/paper_budget.py table "${ARGS[@]}" >>"$LOG" 2>&1
tar czf "$OUT/paper_budget.tgz" experiments/results/paper_budget*.md \
  experiments/results/paper_budget*_runs.jsonl experiments/results/paper_budget_*curve.png \
  $(ls -d experiments/results/paper_budget_in_flight 2>/dev/null) 2>>"$LOG"
cp "$OUT/paper_budget.tgz" "$LAST"
say "done"
