"""``fomm-live serve`` and ``--remote`` without a server: options, refusals and messages that need no Ray start, and
the shipped Serve config file (the server-backed tests are in ``tests/test_remote.py``)."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest
from conftest import golden_dir

from fomm_live.live.cli import main
from fomm_live.live.errors import UserError
from fomm_live.live.remote.client import RemoteBackend

REPO = Path(__file__).resolve().parents[1]
TOKEN = "test-token-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_refuses_to_listen_beyond_loopback_without_a_token(capsys: pytest.CaptureFixture) -> None:
    tiny = golden_dir("tiny")
    assert main(["serve", "--checkpoint", str(tiny / "checkpoint.pth.tar"), "--host", "0.0.0.0"]) == 1
    err = capsys.readouterr().err
    assert "--host 0.0.0.0 listens beyond this machine: pass --token-file" in err
    assert err.count("\n") == 1, err


def test_serve_says_in_one_line_that_its_port_is_taken_before_starting_ray(capsys: pytest.CaptureFixture,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    started = []
    monkeypatch.setattr(ray, "init", lambda *a, **k: started.append(1))  # a stand-in: Ray must not be reached
    tiny = golden_dir("tiny")
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        assert main(["serve", "--checkpoint", str(tiny / "checkpoint.pth.tar"), "--port", str(port)]) == 1
    err = capsys.readouterr().err
    assert f"cannot listen on --host 127.0.0.1 --port {port}: Address already in use" in err
    assert err.count("\n") == 1, err
    assert started == []


def test_serve_help_says_how_to_run_on_one_gpu_machine_and_on_a_ray_cluster(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as done:
        main(["serve", "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "fomm-live serve --checkpoint vox-cpk.pth.tar --host 0.0.0.0 --token-file token.txt" in out
    assert "serve deploy live/remote/serve-config.yaml" in out


def test_remote_urls_map_to_the_stream_route() -> None:
    from fomm_live.live.remote.client import stream_url

    assert stream_url("http://gpu-box:8000") == "ws://gpu-box:8000/stream"
    assert stream_url("ws://127.0.0.1:8000/") == "ws://127.0.0.1:8000/stream"
    assert stream_url("https://fomm.example.org/team") == "wss://fomm.example.org/team/stream"
    with pytest.raises(UserError, match="expected http://HOST:PORT"):
        stream_url("ftp://gpu-box")


def test_a_client_without_a_server_says_so_in_one_line_after_its_retries() -> None:
    pytest.importorskip("websockets", reason="the serve extra (websockets) is not installed")
    with pytest.raises(UserError, match=r"^no fomm-live server at http://127.0.0.1:\d+ .*start one with 'fomm-live"):
        RemoteBackend(f"http://127.0.0.1:{free_port()}", start_timeout=1.0)


def test_remote_with_landmarks_is_an_error(capsys: pytest.CaptureFixture) -> None:
    assert main(["animate", "--source", "x.png", "--driving", "d", "--output", "o", "--backend", "landmarks",
                 "--remote", "http://127.0.0.1:1"]) == 1
    assert "--backend landmarks runs here; --remote is for the FOMM on a server" in capsys.readouterr().err


def test_without_ray_serve_and_remote_say_so_in_one_line(monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture) -> None:
    tiny = golden_dir("tiny")
    monkeypatch.setitem(sys.modules, "ray", None)  # what an environment without the serve extra sees
    monkeypatch.setitem(sys.modules, "websockets", None)
    monkeypatch.setitem(sys.modules, "websockets.sync", None)
    monkeypatch.setitem(sys.modules, "websockets.sync.client", None)
    assert main(["serve", "--checkpoint", str(tiny / "checkpoint.pth.tar")]) == 1
    error = "fomm-live: error: "
    assert capsys.readouterr().err == error + "fomm-live serve needs Ray Serve: pip install 'fomm-live[serve]'\n"
    assert main(["animate", "--source", str(tiny / "source.png"), "--driving", str(tiny), "--output", "unused",
                 "--remote", "http://127.0.0.1:1"]) == 1
    assert capsys.readouterr().err == error + "--remote needs the serve extra: pip install 'fomm-live[serve]'\n"


def test_the_shipped_serve_config_is_valid_and_builds_the_application(tmp_path: Path) -> None:
    pytest.importorskip("ray.serve", reason="the serve extra (ray[serve]) is not installed")
    import yaml
    from ray.serve.schema import ServeDeploySchema

    from fomm_live.live.remote.server import build_app

    config = yaml.safe_load((REPO / "fomm_live" / "live" / "remote" / "serve-config.yaml").read_text())
    ServeDeploySchema.model_validate(config)
    app = config["applications"][0]
    assert app["import_path"] == "fomm_live.live.remote.server:build_app"
    assert app["deployments"][0]["name"] == "FommServer"
    token = tmp_path / "token.txt"
    token.write_text(TOKEN)
    args = dict(app["args"], checkpoint=str(golden_dir("tiny") / "checkpoint.pth.tar"), token_file=str(token))
    assert type(build_app(args)).__name__ == "Application"
    token.write_text("\n")
    with pytest.raises(ValueError, match="is empty"):
        build_app(args)


def test_build_app_refuses_a_non_loopback_host_without_a_token(tmp_path: Path) -> None:
    pytest.importorskip("ray.serve", reason="the serve extra (ray[serve]) is not installed")
    from fomm_live.live.remote.server import build_app

    args = {"checkpoint": str(golden_dir("tiny") / "checkpoint.pth.tar")}
    for host in ("0.0.0.0", "192.168.1.5", None):
        with pytest.raises(ValueError, match="without a token: set 'token_file'"):
            build_app(dict(args, host=host) if host else args)
    assert type(build_app(dict(args, host="127.0.0.1"))).__name__ == "Application"
    with pytest.raises(ValueError, match="allowed_origins"):
        build_app(dict(args, host="127.0.0.1", allowed_origins="https://example.org"))


def test_both_ends_read_the_token_file_the_same_way(tmp_path: Path) -> None:
    """The first non-empty line, stripped: a file with blank lines first and a comment line after serves."""
    from fomm_live.live.remote.client import read_token
    from fomm_live.live.remote.protocol import read_token_file

    token = tmp_path / "token.txt"
    token.write_text(f"\n  \n  {TOKEN}  \nsecond line\n")
    assert read_token(str(token)) == read_token_file(token) == TOKEN
    token.write_text(" \n\n")
    with pytest.raises(UserError, match="is empty"):
        read_token(str(token))
    with pytest.raises(ValueError, match="is empty"):
        read_token_file(token)
