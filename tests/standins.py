"""Stand-ins shared by the tests of the live loop."""

from __future__ import annotations


class WrappedBackend:
    """Wraps an animation backend and passes everything through; a subclass changes what it wants (``render``)."""

    def __init__(self, backend) -> None:
        self.inner = backend
        self.name, self.size = backend.name, backend.size

    def __getattr__(self, name):
        return getattr(self.inner, name)

    @property
    def calibrated(self) -> bool:
        return self.inner.calibrated
