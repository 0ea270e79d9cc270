"""Population sharding: the leading population axis split over a device mesh ("pop").

Use `population_mesh()` for all local devices (CPU devices can be faked with
`XLA_FLAGS=--xla_force_host_platform_device_count=N`). The engine constrains z_PxR to
`PartitionSpec("pop")`; everything downstream of it (payload, model forward, loss) follows,
and the ES update gathers the P losses. Multi-host: the same mesh over `jax.devices()`.
"""

from __future__ import annotations

import jax
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

AXIS = "pop"


def population_mesh(num_devices: int | None = None) -> Mesh:
    devices = jax.devices()[: num_devices or jax.device_count()]
    return jax.make_mesh((len(devices),), (AXIS,), axis_types=(AxisType.Auto,), devices=devices)


def population_sharding(mesh: Mesh) -> NamedSharding:
    """Sharding of a leading population axis; accepts meshes with explicit axes too."""
    if AXIS not in mesh.axis_names:
        raise ValueError(f"mesh needs an axis named {AXIS!r}, has {mesh.axis_names}")
    auto = Mesh(mesh.devices, mesh.axis_names, axis_types=(AxisType.Auto,) * len(mesh.axis_names))
    return NamedSharding(auto, PartitionSpec(AXIS))


def check_divisible(population: int, mesh: Mesh | None) -> None:
    if mesh is not None and population % mesh.shape[AXIS]:
        raise ValueError(
            f"population {population} is not divisible by the {mesh.shape[AXIS]} devices "
            f"of the mesh's {AXIS!r} axis"
        )
