"""fomm-live's benchmarks: one script per thing measured, each runnable as ``python -m fomm_live.benchmarks.NAME``.

What this room is for: figures (latency, throughput, memory, quality against the reference), never pass/fail checks;
the figures and their commands go into ``benchmarks/RESULTS.md``. What it may import: ``kernels``, ``models`` and
``live``; nothing imports it except the command line's ``bench`` command (``live/cli/bench.py``). Shared set-up lives
in ``benchmarks.common``; no script imports another that imports it back.
"""
