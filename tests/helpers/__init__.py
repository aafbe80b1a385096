"""What the test modules share, so that no test module imports another.

- ``clips``: driving clips with a real face and known motion (the bundled portrait moved), written to MP4.
- ``head``: a rendered head with known rotation and mouth opening, and the pose estimator that measures it.
- ``standins``: stand-ins for the live loop's parts (frame sources, cameras that fail, backends that fail or are
  slow) and the tiny golden FOMM backend.
- ``pasteback``: textured photos and a known motion at full resolution for the paste-back tests.
- ``exports``: one ONNX export per set of weights for the session (the ``onnx_export_once`` fixture of conftest).
- ``browser``: the browser tests' harness (a ``BrowserSink`` fed by a thread, the test page's video read back; the
  fixtures that start Chromium are in ``conftest.py``).
- ``fast_paths``: ``assert_fast_path_ran``: a test named for a fast path fails when that path fell back.
- ``spoil``: a pytest plugin (``-p helpers.spoil --spoil PATH``) that spoils one fast path, to show that those tests
  then fail; never loaded by the normal run.

The golden data's paths and reader (``benchmarks.golden``'s, cached) and the fixtures are in ``conftest.py``.
"""
