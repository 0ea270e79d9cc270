"""Help text of each `python -m cbp_jax.run` option (one per RunConfig field).

Kept beside run.py so `--help` explains every option; argparse adds each default. A new
RunConfig field needs a line here (tests/test_newcomer.py checks that none is missing).
"""

from __future__ import annotations

HELP = {
    "task": "a shipped task (sst2, financial_phrasebank, ...) or the path of your own task's "
    "JSON config (see examples/tasks/)",
    "method": "zero_shot | bbt | bbtv2 | prompt_tuning | cbp_z0 | cbp",
    "model": "registered model name, .gguf file or Hugging Face folder",
    "shots": "k-shot examples per class, in train and in dev each",
    "kshot": "class proportions of the k-shot sets: balanced (k per class) or natural "
    "(k x classes in the train pool's proportions)",
    "seed": "seed of the k-shot sets, the test subset and the search",
    "test_size": "test examples drawn from the task's test pool (same subset for a seed)",
    "budget": "API calls for the black-box methods (train and dev together)",
    "population": "CMA-ES candidates per generation",
    "num_dims": "BBT/BBTv2: dimension of the searched vector z",
    "prompt_len": "soft-prompt tokens (BBT, BBTv2, prompt tuning)",
    "sigma0": "BBT/BBTv2: CMA-ES initial step size",
    "strategy": "evolution strategy: pycma (pycma's default: TPA step size for d >= 300, "
    "else CSA), tpa_cma, lazy_cma (CSA; every record before 2026-12-07), cma (evosax) or "
    "sep_cma (diagonal)",
    "loss": "black-box training loss on the returned scores: ce or hinge",
    "chunk": "generations per compiled call; the dev set is scored after each chunk",
    "bbtv2_layers": "BBTv2: comma-separated layer ids to tune (empty: all layers)",
    "pt_epochs": "prompt tuning: epochs over the k-shot train set",
    "pt_lr": "prompt tuning: learning rate",
    "generator": "CBP: directory of a saved stage-1 generator (cbp-jax train-generator)",
    "cbp_sigma0": "CBP: CMA-ES step size around z0",
    "dev_margin": "black-box: dev examples a new ES mean must gain to replace the kept one "
    "(0: any gain, ties on accuracy go to the lower dev loss)",
    "out": "root of the run directories: <out>/<task key>/<method>[-<tag>]/seed<seed>-<hash>",
    "dtype": "compute dtype: auto (bfloat16 on GPU/TPU and CPUs with AMX or AVX512-BF16, "
    "else float32), float32 or bfloat16",
    "p0_offset": "BBT/BBTv2 with --p0 ids: the prompt starts at the embeddings of the "
    "model's token ids p0_offset..; -1: a zero prompt",
    "p0": "BBT/BBTv2 prompt start p0: words (BBT's prefix, RoBERTa's ids 1000-1049 decoded, "
    "in this model's tokens), ids (this model's ids p0_offset..) or zero",
    "bbtv2_sigma0": "BBTv2: CMA-ES initial step size of every layer's ES (BBTv2 uses 0.2)",
    "curve": "black-box: comma-separated call counts at which the kept z is scored on the "
    "test subset (a budget curve from one run)",
    "tag": "extra run-directory label, e.g. the generator's name",
}
