"""Errors raised in one layer and recognised in another; importing them costs nothing (no torch)."""

from __future__ import annotations


class DeviceError(RuntimeError):
    """The device failed (out of memory with nothing left to drop, a device-side assert, a lost GPU, a driver error).

    Raised by the model engines (``models.engines``). Its message is one sentence for the user. Retrying the same
    frame will not help: the caller (the live loop's failure policy, the CLI) should stop.
    """
