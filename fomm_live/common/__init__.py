"""The few names every layer shares, below ``kernels``: the environment switches and the errors that cross layers.

What this room is for: ``common.switches`` declares every ``FOMM_LIVE_*`` variable once (name, values, default,
meaning) and parses them with one function; ``common.errors`` holds the errors that a lower layer raises and a
higher one must recognise without importing the lower one's heavy dependencies (``DeviceError``).
What it may import: the standard library only (no torch, no numpy), so that anything can import it cheaply.
"""
