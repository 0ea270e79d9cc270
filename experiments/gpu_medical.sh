#!/usr/bin/env bash
# Second GPU lease: the medical rows of the CBP table that the CPU did not reach
# (pubmedqa and medqa_usmle have the longest inputs of all tasks), plus a GPU check of the
# test that failed there at TF32 precision before tests/conftest.py pinned it to "highest".
#
#   1. pytest tests/test_shared_prefix.py      (the TF32 failure of the first lease, rechecked)
#   2. studies/cbp/study.py run           medqa_usmle, pubmedqa: zero-shot, BBT, CBP x 3
#      seeds, same SweepConfig and medical generator as the CPU table; results land in the
#      CPU table's run folders, so `cbp-jax study cbp table` puts them in cbp.md (its header
#      lists the devices the runs came from)
#
# Setup: experiments/gpu_setup.sh (wheels, model in parts). Usage, after the setup calls:
#   export PYTHONPATH=/tmp/site:$PWD; OUT=/some/dir bash experiments/gpu_medical.sh
# Outputs under $OUT: lease.log, runs.tgz (every result.json and log of the runs made).
OUT=${OUT:-/tmp/gpu_medical}
source "$(dirname "$0")/gpu_stages.sh"

stage "${TEST_LIMIT:-60}" python3 -m pytest -q -p no:cacheprovider tests/test_shared_prefix.py
stage "${RUN_LIMIT:-420}" python3 -m cbp_jax.cli study cbp run --tasks medqa_usmle,pubmedqa \
  --set domains=medical leave_one_out=
tar czf "$OUT/runs.tgz" checkpoints/cbp_domains/runs/medqa_usmle checkpoints/cbp_domains/runs/pubmedqa \
  2>>"$LOG"
say "done"
