# Sourced by the GPU lease scripts: a log under $OUT and `stage SECONDS CMD...`, which runs a
# command under its own time limit so a cut-short lease still returns what finished.
set -u
OUT=${OUT:-/tmp/gpu_lease}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
LOG="$OUT/lease.log"
say() { echo "== $(date +%T) $*" | tee -a "$LOG"; }
stage() {  # stage SECONDS CMD...
  local limit=$1; shift
  say "start (limit ${limit}s): $*"
  timeout "$limit" "$@" >>"$LOG" 2>&1
  say "end rc=$?: $1 $2"
}
say "device: $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>&1)"
python3 -c "import jax, flax; print('jax', jax.__version__, 'flax', flax.__version__, jax.devices())" >>"$LOG" 2>&1
