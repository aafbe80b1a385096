"""fomm-live: animate a photo with your webcam, live, with the First Order Motion Model; one package, five layers.

The layers, lowest first (a layer imports only the ones before it; ``benchmarks`` only from the ``bench`` command):

    fomm_live.common      the environment switches and the errors every layer shares (standard library only)
    fomm_live.kernels     fused Triton ops for the FOMM hot spots, each beside its PyTorch reference
    fomm_live.models      the networks, configs, checkpoint loading, export, the ``Animator`` API and its engines
    fomm_live.live        the running program: capture, faces, backends, framing, outputs, the loop, the command line
    fomm_live.benchmarks  one script per thing measured: ``python -m fomm_live.benchmarks.NAME``

``python -m fomm_live`` is the ``fomm-live`` command. Importing this package imports nothing else.
"""
