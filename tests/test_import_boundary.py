"""The provider/user boundary as an import rule: each side depends only on the shared layers
(the contract, the model, the data and a few side-free utilities), never on the other side.

Every module of the package is on exactly one of four lists below (most specific prefix
wins), so a new module has to be placed. Provider: holds the weights (scoring service,
adapters, budgets, HTTP server, CBP generator and its training, POST distillation and
transfer, RAPT's tuning pieces). User: holds data and labels (ES engine,
parameterisations, losses' callers, CBP stage 2, sweeps, evaluation through a service,
HTTP client, text privatization, DP-SGD on the student and its audits). Orchestration
runs both sides in one process on purpose (the command line, the experiment runner, the
RAPT loop and its attacks) and may import either. Read from the source with `ast`
(imports inside functions count), nothing imported.
"""

from __future__ import annotations

from tests.test_package_structure import import_graph

SHARED = (
    "cbp_jax.contract",
    "cbp_jax.model",
    "cbp_jax.data",
    "cbp_jax.ckpt",
    "cbp_jax.checks",  # field checks of frozen dataclass configs
    "cbp_jax.loop",  # the one training loop: state, checkpoint, resume, log, progress
    "cbp_jax.distributed",
    "cbp_jax.stats",
    "cbp_jax.overrides",
    "cbp_jax.methods.losses",  # pure functions of scores and labels (stage 1 trains with them)
    "cbp_jax.serve.wire",  # the contract's messages as bytes, for both ends of HTTP
    "cbp_jax.post.audit",  # scores of a prompt on a model one holds (student or teacher)
)
PROVIDER = (
    "cbp_jax.service",
    "cbp_jax.serve.app",
    "cbp_jax.serve.answers",
    "cbp_jax.serve.batcher",
    "cbp_jax.serve.tiles",
    "cbp_jax.serve.launch",
    "cbp_jax.serve.ledger",
    "cbp_jax.serve.limits",
    "cbp_jax.serve.waiting",
    "cbp_jax.prompts.generator",
    "cbp_jax.prompts.artifact",
    "cbp_jax.methods.cbp_train",
    "cbp_jax.methods.stage1_data",
    "cbp_jax.methods.stage1_step",
    "cbp_jax.post.distill",
    "cbp_jax.post.shipped_student",  # the provider releases the student (loaded by name)
    "cbp_jax.post.transfer",
    "cbp_jax.post.transfer_loss",
    "cbp_jax.post.public_alpha",
    "cbp_jax.privacy.peft",
)
USER = (
    "cbp_jax.es",
    "cbp_jax.methods.blackbox",
    "cbp_jax.methods.blackbox_types",
    "cbp_jax.methods.bbt",
    "cbp_jax.methods.calls",
    "cbp_jax.methods.cbp",
    "cbp_jax.methods.chunked_scoring",
    "cbp_jax.methods.evaluate",
    "cbp_jax.methods.prompt_tuning",
    "cbp_jax.methods.saved_prompt",
    "cbp_jax.methods.sweep",
    "cbp_jax.prompts.projection",
    "cbp_jax.serve.client",
    "cbp_jax.serve.split",
    "cbp_jax.privacy.dchi",
    "cbp_jax.privacy.inputs",
    "cbp_jax.post.dp",
    "cbp_jax.post.code_prompts",  # the public code's init texts and label words
)
ORCHESTRATION = (
    "cbp_jax.cli",
    "cbp_jax.cli_commands",
    "cbp_jax.cli_study",
    "cbp_jax.run",
    "cbp_jax.run_report",
    "cbp_jax.experiment",
    "cbp_jax.privacy.rapt",  # RAPT's loop: the user's privatization, the provider's tuning
    "cbp_jax.privacy.attack_suite",  # every attack at one eta; re-runs the user's mechanism
)
# Package __init__ files: docstrings and re-exports of their own package.
PACKAGES = (
    "cbp_jax",
    "cbp_jax.methods",
    "cbp_jax.prompts",
    "cbp_jax.serve",
    "cbp_jax.post",
    "cbp_jax.privacy",
)
SIDES = {"shared": SHARED, "provider": PROVIDER, "user": USER, "orchestration": ORCHESTRATION}


def side(module: str) -> str | None:
    """The side of a module: its longest matching prefix on the lists (None: unplaced)."""
    if module in PACKAGES:
        return "package"
    best = None
    for name, prefixes in SIDES.items():
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and (best is None or len(p) > best[0]):
                best = (len(p), name)
    return None if best is None else best[1]


def test_every_module_is_on_one_side():
    unplaced = sorted(m for m in import_graph() if side(m) is None)
    assert not unplaced, f"place these modules in tests/test_import_boundary.py: {unplaced}"


def test_no_side_imports_the_other():
    allowed = {
        "shared": {"shared"},
        "provider": {"shared", "provider"},
        "user": {"shared", "user"},
    }
    bad = []
    for m, targets in sorted(import_graph().items()):
        mine = side(m)
        if mine not in allowed:
            continue
        for t in sorted(targets):
            theirs = side(t)
            if theirs != "package" and theirs not in allowed[mine]:
                bad.append(f"{m} ({mine}) imports {t} ({theirs})")
    assert not bad, "\n".join(bad)


def test_the_contract_imports_nothing_from_the_package():
    assert import_graph()["cbp_jax.contract"] == set()


def test_shared_package_inits_reexport_only_their_own_package():
    graph = import_graph()
    for pkg in PACKAGES:
        outside = {t for t in graph[pkg] if not t.startswith(pkg + ".")}
        assert not outside, f"{pkg}/__init__.py imports {sorted(outside)}"
