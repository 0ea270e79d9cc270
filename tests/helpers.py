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
