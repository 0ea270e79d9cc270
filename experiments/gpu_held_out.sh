#!/usr/bin/env bash
# Fourth GPU lease: the pre-registered 8000-call held-out sweep (cbp_reading.md, "Planned
# next ... 8000 calls on every held-out task"), all 48 runs in one lease.
#
# On the 2 CPU cores the sweep is 13-15 hours, and its stage-1 generators (lost with the
# previous session's checkpoints) would take another ~3. Here every (task, method) pair is
# its own process, 16 at once on one GPU and 16 host cores: the BBT chain runs seeds 0-2,
# the CBP chain first trains the task's held-out generator (the domain without the task,
# same Stage1 config as the main table), then runs seeds 0-2. Runs are the CPU sweep's
# RunConfigs exactly (same command, config, seeds, k-shot sets and test subsets).
#
# Setup: experiments/gpu_setup.sh (wheels, model in parts). Usage, after the setup calls:
#   export PYTHONPATH=/tmp/site:$PWD; OUT=/some/dir bash experiments/gpu_held_out.sh
# Outputs under $OUT: lease.log; runs.tgz (every run's result.json, log.jsonl and each
# chain's log, refreshed every 30 s so a cut-short lease returns what finished);
# generators.tgz (the eight held-out generators and their stage-1 logs, so unfinished CBP
# runs can resume on the CPU with the same generators).
# Knobs for a local smoke test: TASKS, BUDGET, SWEEP_OUT, SWEEP_LIMIT (seconds).
#
# How it ran on 2026-11-27 (one H200, after the three gpu_setup.sh calls; SWEEP_LIMIT=525):
# it did NOT work. 16 processes plus 8 stage-1 subprocesses compiling at once on 16 host
# cores made every first step take about 2 minutes; in 525 s two of the 48 runs finished
# (copa BBT seeds 0 and 1: 318 s and 100 s, about the CPU's 5.5 min), the three medical
# held-out generators finished stage 1 (2:47-4:18 for 150 steps) and no commonsense one got
# past step 13 of 200 (8-68 s a step: each batch width compiles anew). Log:
# experiments/results/gpu_held_out_h200.txt. Do not run it this way again: one process at a
# time is faster here (earlier leases: 15-60 s a run at 1000 calls, mostly compilation).
OUT=${OUT:-/tmp/gpu_held_out}
source "$(dirname "$0")/gpu_stages.sh"

TASKS=${TASKS:-copa mmlu_medical arc_easy piqa arc_challenge boolq medqa_usmle pubmedqa}
BUDGET=${BUDGET:-8000}
SWEEP_OUT=${SWEEP_OUT:-checkpoints/cbp_b8000_held_out}
SWEEP_LIMIT=${SWEEP_LIMIT:-480}
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # 16-24 processes share the GPU's memory
CHAINS=/tmp/gpu_held_out_chains
mkdir -p "$CHAINS"

snapshot() {  # finished runs and chain logs -> $OUT/runs.tgz (atomically replaced)
  (find "$SWEEP_OUT/runs" \( -name result.json -o -name log.jsonl \) 2>/dev/null
   ls "$CHAINS"/*.log 2>/dev/null) | tar czf "$OUT/runs.tgz.part" -T - 2>/dev/null
  mv -f "$OUT/runs.tgz.part" "$OUT/runs.tgz"
}

say "sweep: tasks [$TASKS], budget $BUDGET, out $SWEEP_OUT, limit ${SWEEP_LIMIT}s"
for task in $TASKS; do
  for method in bbt cbp; do
    timeout "$SWEEP_LIMIT" python3 -m cbp_jax.cli study cbp run --budget "$BUDGET" \
      --tasks "$task" --set held_out_only=true "methods=$method" "out=$SWEEP_OUT" \
      >"$CHAINS/$task-$method.log" 2>&1 &
  done
done
while pgrep -f "study cbp run" >/dev/null; do
  sleep 30
  snapshot
  say "finished runs: $(find "$SWEEP_OUT/runs" -name result.json 2>/dev/null | wc -l)"
done
wait
snapshot
tar czf "$OUT/generators.tgz" "$SWEEP_OUT"/generators/*/generator \
  "$SWEEP_OUT"/generators/*/log.jsonl 2>>"$LOG"
grep -h "test\|Error\|error" "$CHAINS"/*.log | tail -60 >>"$LOG"
say "done: $(find "$SWEEP_OUT/runs" -name result.json | wc -l) runs finished"
