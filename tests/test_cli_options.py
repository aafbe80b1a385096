"""One command line: the same option names on every command, no prefix abbreviations, and a mistake answered in one
line by the real command (a user reads the message, so most of these run ``python -m fomm_live`` as a user would)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from fomm_live.live.cli import main
from fomm_live.live.cli.parser import build_parser


def run_cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """The real command in a fresh interpreter, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "fomm_live", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=120)


def subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def options_of(parser: argparse.ArgumentParser, *, shown: bool = True) -> set[str]:
    return {name for action in parser._actions for name in action.option_strings
            if not shown or action.help is not argparse.SUPPRESS}


def test_no_parser_takes_prefix_abbreviations() -> None:
    parsers = {"fomm-live": build_parser(), **subparsers()}
    assert set(parsers) >= {"fomm-live", "run", "animate", "demo", "bench", "doctor", "export", "serve", "cameras"}
    assert {name: p.allow_abbrev for name, p in parsers.items() if p.allow_abbrev}.keys() == set()


@pytest.mark.parametrize("argv", [
    ["demo", "--output-s", "640x480"],  # once a prefix of --output-size
    ["run", "--outp", "x.mp4"],  # once a prefix of --output
    ["animate", "--source", "a.png", "--driving", "d", "--output", "o", "--find-best", "--no-smooth"],
])
def test_a_prefix_is_not_taken_for_an_option(argv: list[str], capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args(argv)
    assert done.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["animate", "--source", "a.png", "--driving", "d"], ["demo"], ["run"]])
def test_output_is_output_on_every_command_that_writes(command: list[str]) -> None:
    """`--output x.mp4` is where the output goes on animate, demo and run (on demo it once became --output-size)."""
    args = build_parser().parse_args([*command, "--output", "x.mp4"])
    assert args.output in ("x.mp4", ["x.mp4"])
    assert getattr(args, "output_size", None) is None


@pytest.mark.parametrize(("command", "old", "new"), [
    (["animate", "--source", "a.png", "--driving", "d"], "--out", "--output"),
    (["demo"], "--out", "--output"),
    (["run"], "--out", "--output"),
    (["bench"], "--json", "--stats-json"),
    (["export", "--checkpoint", "c.pth"], "--onnx", "--output"),
])
def test_an_old_option_name_is_one_line_naming_the_new_one(command: list[str], old: str, new: str) -> None:
    result = run_cli(*command, old, "x.mp4")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"fomm-live {command[0]}: error: {old} is now {new}: fomm-live {command[0]}"), lines
    assert "usage:" not in result.stderr


def test_the_old_names_are_gone_from_help() -> None:
    for name, parser in subparsers().items():
        shown = options_of(parser)
        assert not shown & {"--out", "--json", "--onnx"}, name
    assert "--output" in options_of(subparsers()["animate"]) and "--stats-json" in options_of(subparsers()["bench"])


def test_options_named_on_several_commands_are_spelled_one_way() -> None:
    """Where output goes, the figures file and the model's config have one name each on every command."""
    parsers = subparsers()
    for name in ("run", "demo", "animate", "export"):
        assert "--output" in options_of(parsers[name]), name
    for name in ("run", "demo", "bench"):
        assert "--stats-json" in options_of(parsers[name]), name
    configs = {}
    for name, parser in parsers.items():
        for action in parser._actions:
            if "--config" in action.option_strings:
                configs[name] = (action.default, action.metavar, action.help)
    assert set(configs) == {"run", "animate", "demo", "bench", "export", "serve", "doctor"}
    assert len(set(configs.values())) == 1, configs


def test_a_usage_mistake_is_one_line() -> None:
    result = run_cli("demo", "--output-size", "big")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "expected WIDTHxHEIGHT such as 640x480, got 'big'" in lines[0], result.stderr
    assert "fomm-live demo --help" in lines[0]


@pytest.mark.parametrize(("argv", "expected"), [
    (["animate", "--source", "a.png", "--driving", "d", "--output", "a.avi"],
     "--output a.avi: a .avi file is not written here; use a video file (.mp4, .mov or .mkv), or a folder (a name "
     "without a suffix) for PNG frames"),
    (["run", "--output", "a.mkv"],
     "--output a.mkv: a .mkv file is not written here; use virtualcam, window, browser[:PORT] or a recording file "
     "(.mp4)"),
    (["demo", "--output", "clip.avi"],
     "--output clip.avi: a .avi file is not written here; use virtualcam, window, browser[:PORT] or a recording "
     "file (.mp4)"),
    (["run", "--output", "vitrualcam"],
     "--output vitrualcam: not an output name or a file name; use virtualcam, window, browser[:PORT] or a "
     "recording file (.mp4)"),
    (["run", "--output", "browser:99999"], "--output browser:99999: the port must be a number from 1 to 65535"),
])
def test_an_output_suffix_that_is_not_written_is_refused_in_one_line(argv: list[str], expected: str,
                                                                      tmp_path: Path) -> None:
    result = run_cli(*argv, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"fomm-live: error: {expected}"]
    assert list(tmp_path.iterdir()) == [], "nothing is written"


@pytest.mark.parametrize("value", ["frames", "frames/", "result.mp4", "result.MOV", "result.mkv"])
def test_animate_accepts_a_video_or_a_folder(value: str) -> None:
    from fomm_live.live.cli.outputs import check_animate_output

    check_animate_output(value)  # raises UserError when refused


def test_an_existing_folder_with_a_dot_is_a_frame_folder(tmp_path: Path) -> None:
    from fomm_live.live.cli.outputs import check_animate_output

    (tmp_path / "take.2").mkdir()
    check_animate_output(str(tmp_path / "take.2"))


@pytest.mark.parametrize("extra", [[], ["--checkpoint", "missing.pth.tar"], ["--backend", "landmarks"]])
def test_an_unknown_preset_is_refused_with_or_without_a_checkpoint(extra: list[str],
                                                                  capsys: pytest.CaptureFixture) -> None:
    assert main(["run", "--config", "vox-512", "--camera", "missing.mp4", *extra]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["fomm-live: error: unknown preset 'vox-512'; presets: bair-256, fashion-256, mgif-256, nemo-256, "
                   "taichi-256, taichi-adv-256, vox-256, vox-adv-256"]


@pytest.mark.parametrize("command", [["bench"], ["doctor"], ["export", "--checkpoint", "c.pth", "--output", "o"],
                                     ["demo"], ["animate", "--source", "a.png", "--driving", "d", "--output", "o"]])
def test_every_command_refuses_an_unknown_preset(command: list[str], capsys: pytest.CaptureFixture) -> None:
    assert main([*command, "--config", "vox"]) == 1
    assert "unknown preset 'vox'; presets: " in capsys.readouterr().err


def test_a_missing_config_file_is_refused_without_a_checkpoint(capsys: pytest.CaptureFixture) -> None:
    assert main(["run", "--config", "configs/mine.yaml", "--camera", "missing.mp4"]) == 1
    assert capsys.readouterr().err.strip() == "fomm-live: error: config file not found: configs/mine.yaml"


def test_the_command_lines_preset_list_is_the_models() -> None:
    from fomm_live.live.cli.common import PRESET_NAMES
    from fomm_live.models import preset_names

    assert sorted(PRESET_NAMES) == preset_names()


def test_demo_says_which_photo_it_animates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture) -> None:
    """`demo --source X` animates X and says so (run_live replaced by a stand-in that records what it is given)."""
    import fomm_live.live.cli.demo as demo
    import fomm_live.live.democlip as democlip

    given = {}
    monkeypatch.setattr(democlip, "demo_clip_path", lambda: tmp_path / "demo-clip.mp4")
    monkeypatch.setattr(demo, "run_live", lambda sources, **kw: given.update(sources=sources, **kw) or 0)
    assert main(["demo", "--source", "me.png", "--output", str(tmp_path / "d.mp4"), "--no-preview"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"demo: me.png driven by demo-clip.mp4 -> {tmp_path / 'd.mp4'}"
    assert "bundled portrait" not in "\n".join(out)
    assert given["sources"] == ["me.png"] and given["outputs"].outputs == (str(tmp_path / "d.mp4"),)
    assert main(["demo", "--no-preview"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "demo: the bundled portrait driven by demo-clip.mp4 -> " \
                                                      "fomm-live-demo.mp4"
