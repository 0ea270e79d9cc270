"""Test helpers shared by several test modules."""


class KilledService:
    """Wraps a scoring service and dies at the n-th reservation (a killed process)."""

    def __init__(self, inner, die_at):
        self.inner, self.die_at, self.n = inner, die_at, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def reserve(self, calls):
        self.n += 1
        if self.n == self.die_at:
            raise KeyboardInterrupt("killed")
        self.inner.reserve(calls)


def assert_parity(got, expected, real, tol=1e-4):
    """Our float32 logits `got` match the reference `expected` at the `real` positions to
    `tol`; a failure names the largest difference, where it is and the logits' scale."""
    import numpy as np

    diff = np.where(real[..., None], np.abs(np.asarray(got, np.float64) - expected), 0.0)
    where = np.unravel_index(diff.argmax(), diff.shape)
    scale = np.abs(expected[real]).max()
    assert diff.max() <= tol, f"max |diff| {diff.max():.2e} at {where}, logit scale {scale:.1f}"
