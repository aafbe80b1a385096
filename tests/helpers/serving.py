"""``fomm-live serve`` started for real, as a user starts it, for the tests that talk to it: a subprocess on
loopback with the tiny golden model on the CPU and a token; its processes found from /proc to check that SIGTERM
stops them all and to measure their memory."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import golden_dir, read_rgb

from fomm_live.live.remote import protocol

REPO = Path(__file__).resolve().parents[2]
TOKEN = "test-token-0123456789"
START_TIMEOUT_S = 240  # Ray, its Serve controller and one replica on a loaded 2-core machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (Ray's GCS, raylet, workers...), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class Server:
    """``fomm-live serve`` in a subprocess, as a user starts it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token_file = folder / "token.txt"
        self.token_file.write_text(TOKEN + "\n")
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        tiny = golden_dir("tiny")
        self.starts += 1
        self.log = self.folder / f"serve-{self.starts}.log"
        env = dict(os.environ, PYTHONPATH=str(REPO))
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "fomm_live", "serve", "--checkpoint", str(tiny / "checkpoint.pth.tar"),
                 "--config", str(tiny / "config.yaml"), "--device", "cpu", "--precision", "fp32", "--port",
                 str(self.port), "--token-file", str(self.token_file)],
                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT_S
        while "serving on" not in self.log.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"fomm-live serve did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.5)

    def stop(self) -> set[int]:
        """SIGTERM, as a service manager stops it; returns the processes it had started that are still alive."""
        if self.proc is None:
            return set()
        below = descendants(self.proc.pid)
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
        deadline = time.monotonic() + 30
        while (left := {p for p in below if alive(p)}) and time.monotonic() < deadline:
            time.sleep(0.5)
        return left

    def stats(self, token: str | None = TOKEN) -> dict:
        request = urllib.request.Request(self.url + protocol.STATS_ROUTE,
                                         headers={"Authorization": f"Bearer {token}"} if token else {})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())



def golden(name: str) -> np.ndarray:
    return read_rgb(golden_dir("tiny") / name)
