"""fomm-live: real-time webcam puppeteering with the First Order Motion Model."""

from setuptools import find_packages, setup

setup(
    name="fomm-live",
    version="0.1.0",
    description="Animate a photo with your webcam, live, with the First Order Motion Model; virtual camera output.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.11",
    # One top-level package, so that nothing else in site-packages is shadowed (a "models" or "common" of another
    # project stays whole); every sub-package too (fomm_live.live.cli, fomm_live.models.engines, ...).
    packages=find_packages(include=["fomm_live", "fomm_live.*"]),
    package_data={"fomm_live.live": ["assets/*.jpg", "assets/*.png", "assets/*.md", "remote/serve-config.yaml",
                                    "output/browser_page.html", "output/extension/*"]},
    install_requires=[
        # Pinned: the release the project is tested with; on CI it is the CPU build already on disk, on users'
        # machines the normal (CUDA) build. Any looser spec makes every CI run download a multi-GB CUDA build.
        "torch==2.13.0",
        # mediapipe 0.10.21 is the last release whose wheel carries its face detection and face mesh models; later
        # releases download .task files at run time, which fails offline. It needs numpy<2 and
        # opencv-contrib-python (a second OpenCV package beside it breaks cv2, so opencv-python is not listed).
        "mediapipe==0.10.21",
        "numpy>=1.24,<2",
        # 4.12 and later require numpy>=2, which mediapipe 0.10.21 cannot use.
        "opencv-contrib-python>=4.8,<4.12",
        "PyYAML>=6.0",
        "pyvirtualcam>=0.11",
        # PyAV writes MP4 with metadata tags (OpenCV's writer cannot), and copies audio.
        "av>=12",
        # Progress bars for offline animation and benchmarks.
        "tqdm>=4.60",
        # bench --plot; mediapipe already depends on it, listed because fomm-live imports it itself.
        "matplotlib>=3.7",
        # --precision int8 (and auto's choice of it on CPUs with VNNI / AMX): OpenVINO runs the generator quantised
        # by NNCF. Chosen by measurement among OpenVINO + NNCF, ONNX Runtime and PyTorch PT2E (benchmarks/int8.py,
        # benchmarks/RESULTS.md): the fastest on the 2-core test CPU (generator 5.1x float32 eager, 3.0x bf16),
        # within the quality bar. Both resolve beside numpy<2, protobuf<5 and opencv<4.12 (openvino 2026.4, nncf
        # 3.4 checked); their telemetry is kept off (models.engines.int8_runtimes).
        "openvino>=2026.0",
        "nncf>=3.0",
        # --output browser (the browser extension's camera: calls in a browser with no virtual camera driver) serves
        # its frames over a WebSocket; a core dependency so that this driver-free output works in a plain install.
        # Pure Python with no dependencies of its own; the client of run --remote uses it too.
        "websockets>=13",
    ],
    extras_require={
        # TensorRT needs an NVIDIA GPU; it matches the pinned torch release.
        "tensorrt": ["torch-tensorrt==2.13.0"],
        # fomm-live serve and run --remote: Ray Serve (its FastAPI ingress serves the WebSocket) and the client's
        # WebSocket library. Resolves beside mediapipe's numpy<2 and protobuf<5 pins (ray 2.60 checked).
        # 2.52: the first Ray release with token authentication for its own services (RAY_AUTH_MODE=token).
        # h11: the serve command's ingress relays plain HTTP requests (/stats) to Serve's private proxy with it (the
        # HTTP/1.1 parser Serve's uvicorn uses too). websockets 15: the ingress's relay turns off the environment's
        # proxies (connect(proxy=None)), which earlier releases do not accept.
        "serve": ["ray[serve]>=2.52", "websockets>=15", "h11>=0.14"],
        "test": [
            # tests/test_remote.py starts a real Ray Serve instance on the CPU.
            "fomm-live[serve]",
            "pytest>=7",
            # tests/test_install.py builds the wheel without build isolation (nothing downloaded): setuptools 70.1 and
            # later build wheels themselves; the 65.5 that Python 3.11's venv brings needs the separate wheel package.
            "setuptools>=70.1",
            "ruff>=0.4",
            # Bounded fuzzing of the image and checkpoint loaders (tests/test_fuzz.py).
            "hypothesis>=6.100",
            # ONNX export and its ONNX Runtime check (tests/test_export.py); onnxscript is PyTorch's ONNX exporter.
            # onnx 1.23 needs protobuf>=6, which mediapipe 0.10.21 (protobuf<5) rules out.
            "onnx>=1.17,<1.23",
            "onnxruntime>=1.20",
            "onnxscript>=0.3",
            # Runs the fused kernels of kernels/ in its CPU interpreter in tests/test_kernels.py (Linux x86-64 wheels).
            "triton>=3.2; platform_system == 'Linux' and platform_machine == 'x86_64'",
            # Drives the system Chromium (its executable_path; no browser download) with the browser extension
            # loaded (tests/test_browser_extension.py).
            "playwright>=1.40",
        ],
    },
    entry_points={"console_scripts": ["fomm-live = fomm_live.live.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3.11",
        "License :: OSI Approved :: MIT License",
        "Operating System :: OS Independent",
        "Topic :: Multimedia :: Video",
    ],
)
