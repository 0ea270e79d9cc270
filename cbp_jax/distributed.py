"""Population sharding and multi-host runs: the leading population axis split over a mesh
axis "pop", one JAX program over every process's devices.

`population_mesh()` puts every device (of every process, after `initialize`; CPU devices can
be faked with `XLA_FLAGS=--xla_force_host_platform_device_count=N`) on the "pop" axis. Given
that mesh, a sweep (or `run_blackbox`) constrains z_PxR to `population_sharding(mesh)`, so
everything downstream of it (payload, model forward, loss) is split over every device of
every host, and the ES update gathers the P losses; the ES state, being replicated, stays
identical on all processes. JAX is multi-controller: every process runs the same script and
`jax.distributed.initialize` connects them through a coordinator. Inputs must be the same
global arrays on every process: `replicate` makes them (each process passes its identical
host copy), and outputs come back fully replicated, so each process can read them (write
files from `is_coordinator()` only).

Launching on SLURM or with CBP_COORDINATOR / CBP_NUM_PROCESSES / CBP_PROCESS_ID:
docs/cluster.md ("One JAX program over several hosts").
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

AXIS = "pop"
ENV = ("CBP_COORDINATOR", "CBP_NUM_PROCESSES", "CBP_PROCESS_ID")


def initialize(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    local_device_ids=None,
) -> None:
    """Join this process to the run (`jax.distributed.initialize`); call before any JAX op.

    Arguments left None come from CBP_COORDINATOR / CBP_NUM_PROCESSES / CBP_PROCESS_ID if
    set, else from JAX's cluster auto-detection (SLURM, Open MPI, ...).
    """
    env = {k: os.environ.get(k) for k in ENV}
    coordinator = coordinator or env["CBP_COORDINATOR"]
    if num_processes is None and env["CBP_NUM_PROCESSES"] is not None:
        num_processes = int(env["CBP_NUM_PROCESSES"])
    if process_id is None and env["CBP_PROCESS_ID"] is not None:
        process_id = int(env["CBP_PROCESS_ID"])
    if num_processes is not None and num_processes < 1:
        raise ValueError(f"num_processes must be >= 1, got {num_processes}")
    if process_id is not None and num_processes is not None and not 0 <= process_id < num_processes:
        raise ValueError(f"process_id {process_id} is not in [0, {num_processes})")
    jax.distributed.initialize(
        coordinator_address=coordinator,
        num_processes=num_processes,
        process_id=process_id,
        local_device_ids=local_device_ids,
    )


def shutdown() -> None:
    jax.distributed.shutdown()


def is_coordinator() -> bool:
    return jax.process_index() == 0


def population_mesh(num_devices: int | None = None) -> Mesh:
    """A 1-D "pop" mesh over the first `num_devices` devices (default: every device of every
    process), in process order."""
    devices = sorted(jax.devices(), key=lambda d: (d.process_index, d.id))[: num_devices or None]
    return jax.make_mesh((len(devices),), (AXIS,), axis_types=(AxisType.Auto,), devices=devices)


global_population_mesh = population_mesh


def population_sharding(mesh: Mesh) -> NamedSharding:
    """Sharding of a leading population axis; accepts meshes with explicit axes too."""
    if AXIS not in mesh.axis_names:
        raise ValueError(f"mesh needs an axis named {AXIS!r}, has {mesh.axis_names}")
    auto = Mesh(mesh.devices, mesh.axis_names, axis_types=(AxisType.Auto,) * len(mesh.axis_names))
    return NamedSharding(auto, PartitionSpec(AXIS))


def check_divisible(population: int, mesh: Mesh | None) -> None:
    """Raise unless the population splits evenly over the mesh's "pop" axis."""
    if mesh is not None and population % mesh.shape[AXIS]:
        raise ValueError(
            f"population {population} is not divisible by the {mesh.shape[AXIS]} devices "
            f"of the mesh's {AXIS!r} axis"
        )


def replicate(tree, mesh: Mesh):
    """Each leaf as a global array replicated over `mesh` (same host value on every process).

    Typed PRNG keys are not accepted; pass `jax.random.key_data(keys)` instead.
    """
    sharding = replicated(mesh)

    def put(x):
        host = np.asarray(x)
        return jax.make_array_from_process_local_data(sharding, host, host.shape)

    return jax.tree.map(put, tree)


def replicated(mesh: Mesh) -> NamedSharding:
    """The fully replicated sharding over `mesh` (jit `out_shardings` for readable outputs)."""
    return NamedSharding(mesh, PartitionSpec())
