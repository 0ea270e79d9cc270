"""Benchmark white-box prompt tuning's training step in float32 and bfloat16: ours vs PyTorch.

What: one gradient step of soft-prompt tuning (the white-box baseline and POST's inner
loop): a P x D prompt prepended to a B x S batch of sst2 k-shot examples, class scores at
the answer position, cross-entropy, the gradient with respect to the prompt only. Ours:
`jax.value_and_grad` of `methods.prompt_tuning.prompt_scores` + cross-entropy, jitted, the
model loaded in each dtype (bf16 matmul inputs with float32 accumulation; the prompt and
its gradient float32). PyTorch: transformers on the same GGUF weights, the prompt an
`nn.Parameter` fed through `inputs_embeds`, `logits_to_keep=1`, `.backward()`; in bfloat16
the model is cast to bf16 (its fastest CPU form, as in bench_forward.py). Jobs are warmed up
and take turns in every repeat (cbp_jax.experiment.timing); compare only ratios from one
run, on a quiet machine.

Prints per dtype ours and torch steps/s and their ratio, and
  RESULT backward_bf16_over_f32_ours X   float32 step seconds / bfloat16 step seconds (ours)
  RESULT backward_speedup_vs_torch_same_dtype Y   min over dtypes of torch / ours seconds
Run: `.venv/bin/python experiments/bench_backward.py [--batch 8 --prompt-len 50 --repeats 5]`.
"""

from __future__ import annotations

import pathlib
import statistics

import jax
import jax.numpy as jnp
import numpy as np
from bench_common import kshot_inputs, parser, print_results, stamp, torch_model, write_record

from cbp_jax.data.tasks import get_task
from cbp_jax.experiment.timing import interleaved_times
from cbp_jax.methods.losses import cross_entropy
from cbp_jax.methods.prompt_tuning import prompt_scores
from cbp_jax.model import load_model
from cbp_jax.model.precision import machine_info

RESULTS = pathlib.Path(__file__).resolve().parent / "results" / "bench_backward.json"
DTYPES = ("float32", "bfloat16")


def ours_step(model, prompt_TxD, tokens, mask, cands, labels):
    """A job: one jitted value-and-grad of the prompt-tuning loss; returns the gradient."""
    cfg = model.cfg

    def loss(prompt, params, t, k):
        return cross_entropy(prompt_scores(params, cfg, prompt, t, k, cands), labels)

    grad = jax.jit(jax.value_and_grad(loss))
    args = (jnp.asarray(prompt_TxD, jnp.float32), model.params, tokens, mask)
    return lambda: jax.block_until_ready(grad(*args))[1]


def torch_step(source: str, dtype: str, prompt_TxD, tokens, mask, cands, labels):
    """A job: the same loss and prompt gradient in transformers PyTorch."""
    torch, model = torch_model(source, dtype)
    dt = getattr(torch, dtype)
    for p in model.parameters():
        p.requires_grad_(False)
    prompt = torch.nn.Parameter(torch.tensor(np.asarray(prompt_TxD), dtype=dt))
    ids, attn = torch.from_numpy(np.asarray(tokens)).long(), torch.from_numpy(np.asarray(mask))
    b, t = ids.shape[0], prompt.shape[0]
    attn = torch.cat([torch.ones(b, t, dtype=attn.dtype), attn], 1).long()
    pos = (attn.cumsum(-1) - 1).clamp(min=0)  # left padding: positions count real tokens
    flat = torch.tensor(np.asarray(cands).reshape(-1))
    y = torch.from_numpy(np.asarray(labels)).long()
    c, w = np.shape(cands)

    def run():
        prompt.grad = None
        embeds = torch.cat([prompt.expand(b, -1, -1), model.get_input_embeddings()(ids)], 1)
        kw = dict(attention_mask=attn, position_ids=pos, logits_to_keep=1)
        out = model(inputs_embeds=embeds, **kw).logits[:, -1]
        logp = torch.log_softmax(out.float(), -1)[:, flat].reshape(b, c, w)
        loss = torch.nn.functional.cross_entropy(torch.logsumexp(logp, -1), y)
        loss.backward()
        return prompt.grad.float().numpy()

    return run


def main(argv=None) -> dict:
    p = parser(__doc__.splitlines()[0], model="smollm2-135m", task="sst2", batch=8, prompt_len=50,
               repeats=5, out=RESULTS)  # fmt: skip
    args = p.parse_args(argv)
    if min(args.batch, args.prompt_len, args.repeats) < 1:
        raise ValueError("--batch, --prompt-len and --repeats must be positive")
    import torch

    machine = machine_info()
    print(f"{vars(args)}\nmachine: {machine}; jax {jax.__version__}, torch {torch.__version__}")
    per_class = -(-args.batch // get_task(args.task).num_classes)
    jobs, grads = {}, {}
    for dt in DTYPES:
        model = load_model(args.model, dtype=dt)
        data = kshot_inputs(model.tokenizer, args.task, per_class, args.batch)
        rows = np.random.default_rng(0).integers(100, 5000, args.prompt_len)
        prompt = np.asarray(model.params["embed"], np.float32)[rows]
        batch = (data.tokens_BxS, data.mask_BxS, data.candidates_CxW, data.labels_B)
        jobs[f"ours_{dt}"] = ours_step(model, prompt, *[jnp.asarray(x) for x in batch])
        jobs[f"torch_{dt}"] = torch_step(model.source, dt, prompt, *batch)
        g_ours, g_torch = np.asarray(jobs[f"ours_{dt}"]()), jobs[f"torch_{dt}"]()
        cos = float(np.sum(g_ours * g_torch) / np.linalg.norm(g_ours) / np.linalg.norm(g_torch))
        grads[dt] = g_ours
        print(f"{dt}: cosine(prompt gradient ours, torch) = {cos:.4f}")
    times = interleaved_times(jobs, args.repeats)
    sec = {k: statistics.median(t) for k, t in times.items()}
    out = {"seconds": sec, "seconds_per_repeat": times}
    for dt in DTYPES:
        out[f"speedup_vs_torch_{dt}"] = sec[f"torch_{dt}"] / sec[f"ours_{dt}"]
        ratio = out[f"speedup_vs_torch_{dt}"]
        print(f"{dt:>9}: ours {1 / sec[f'ours_{dt}']:.2f} steps/s, torch "
              f"{1 / sec[f'torch_{dt}']:.2f}, ours/torch {ratio:.2f}")  # fmt: skip
    out["backward_bf16_over_f32_ours"] = sec["ours_float32"] / sec["ours_bfloat16"]
    out["backward_speedup_vs_torch_same_dtype"] = min(out[f"speedup_vs_torch_{d}"] for d in DTYPES)
    g32, g16 = grads["float32"], grads["bfloat16"]
    out["grad_cosine_bf16_f32_ours"] = float(
        np.sum(g32 * g16) / np.linalg.norm(g32) / np.linalg.norm(g16)
    )
    record = out | {"machine": machine, "config": vars(args) | {"out": str(args.out)}, **stamp()}
    write_record(args.out, record)
    print(f"ours bf16 vs f32: prompt-gradient cosine {out['grad_cosine_bf16_f32_ours']:.4f}")
    keys = ("backward_bf16_over_f32_ours", "backward_speedup_vs_torch_same_dtype")
    print_results({k: out[k] for k in keys})
    return record


if __name__ == "__main__":
    main()
