"""`wes-arvados pull`: options, output names, progress, --json and exit statuses."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

from wes_arvados.cli.main import main
from wes_arvados.images.progress import TerminalProgress, human_size, summary_line

from ..wes import ROOT
from .builder import ImageFactory, push
from .registry import FaultProxy, Registry


def run(capsys: pytest.CaptureFixture, *args: str) -> tuple:
    """`wes-arvados pull ARGS` in this process: (exit status, stdout, stderr)."""
    status = main(["pull", *args])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture
def pushed(registry: Registry, repo: str, image_factory: ImageFactory) -> str:
    """The schema2 busybox image pushed as repo:1; its reference."""
    push(registry, repo, "1", image_factory.docker_schema2())
    return f"{registry.host}/{repo}:1"


def test_json_prints_one_object_with_the_result(capsys: pytest.CaptureFixture, pushed: str, tmp_path: Path,
                                                image_factory: ImageFactory) -> None:
    image = image_factory.docker_schema2()
    status, out, err = run(capsys, pushed, "-o", str(tmp_path / "x.tar"), "--cache-dir", str(tmp_path / "c"), "--json")
    assert status == 0 and err == ""
    result = json.loads(out)
    assert result["image_id"] == image.config_digest and result["manifest_digest"] == image.digest
    assert result["output"] == str(tmp_path / "x.tar") and result["size"] == (tmp_path / "x.tar").stat().st_size
    assert result["repo_tags"] == [pushed] and result["format"] == "docker-archive"
    assert result["layers"] == "uncompressed" and result["platform"] == "linux/amd64"
    assert isinstance(result["seconds"], float)


def test_without_json_a_summary_line_goes_to_stderr(capsys: pytest.CaptureFixture, pushed: str, tmp_path: Path,
                                                    image_factory: ImageFactory) -> None:
    status, out, err = run(capsys, pushed, "-o", str(tmp_path / "x.tar"), "--cache-dir", str(tmp_path / "c"))
    assert status == 0 and out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and "\r" not in err  # no progress bar off a terminal
    assert image_factory.docker_schema2().config_digest in lines[0] and " s" in lines[0]


def test_the_default_output_is_named_after_the_image(capsys: pytest.CaptureFixture, pushed: str, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    status, _, _ = run(capsys, pushed, "--json")
    name = pushed.rsplit("/", 1)[1].replace(":", "_") + ".tar"
    assert status == 0 and sorted(os.listdir(tmp_path)) == sorted([name, "xdg"])
    assert (tmp_path / "xdg" / "wes-arvados" / "blobs").is_dir()
    status, _, _ = run(capsys, pushed, "--format", "oci", "--json")
    assert status == 0 and (tmp_path / name[:-4] / "index.json").is_file()
    with pytest.raises(SystemExit):
        main(["pull", "--help"])
    assert "img_1.tar" in capsys.readouterr().out


def test_no_cache_leaves_no_cache_behind(capsys: pytest.CaptureFixture, pushed: str, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    status, _, _ = run(capsys, pushed, "-o", str(tmp_path / "out" / "x.tar"), "--no-cache", "--json")
    assert status == 0
    assert os.listdir(tmp_path) == ["out"] and os.listdir(tmp_path / "out") == ["x.tar"]


def test_a_missing_image_fails_with_one_line_naming_image_and_registry(capsys: pytest.CaptureFixture,
                                                                       registry: Registry, tmp_path: Path) -> None:
    ref = f"{registry.host}/test/nothing-here:1"
    status, out, err = run(capsys, ref, "-o", str(tmp_path / "x.tar"), "--cache-dir", str(tmp_path / "c"))
    assert status == 1 and out == ""
    assert len(err.splitlines()) == 1
    assert ref in err and f"registry {registry.host}" in err and "404" in err
    assert not (tmp_path / "x.tar").exists()
    status, out, err = run(capsys, ref, "-o", str(tmp_path / "x.tar"), "--cache-dir", str(tmp_path / "c"), "--json")
    assert status == 1 and json.loads(out)["registry"] == registry.host and "404" in json.loads(out)["error"]
    assert os.listdir(tmp_path) == ["c"]


@pytest.mark.parametrize("args", [["Not/A/Valid:Ref"], ["busybox", "--format", "oci", "--layers", "uncompressed"],
                                  ["busybox", "--registry-mirror", "no-equals-sign"]])
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture, args: List[str], tmp_path: Path) -> None:
    status, _, err = run(capsys, *args, "--cache-dir", str(tmp_path))
    assert status == 2 and err.startswith("wes-arvados pull: ") and len(err.splitlines()) == 1


def test_jobs_must_be_positive(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["pull", "busybox", "--jobs", "0"])
    assert exc.value.code == 2


def test_credentials_come_from_the_registry_config(capsys: pytest.CaptureFixture, basic_registry: Registry,
                                                   repo: str, tmp_path: Path, image_factory: ImageFactory) -> None:
    push(basic_registry, repo, "1", image_factory.oci())
    ref = f"{basic_registry.host}/{repo}:1"
    common = ["-o", str(tmp_path / "x.tar"), "--cache-dir", str(tmp_path / "c"), "--json"]
    (tmp_path / "empty.json").write_text("{}")
    status, out, _ = run(capsys, ref, *common, "--registry-config", str(tmp_path / "empty.json"))
    assert status == 1 and "401" in json.loads(out)["error"]
    status, out, _ = run(capsys, ref, *common, "--registry-config", str(tmp_path / "missing.json"))
    assert status == 1 and "missing.json" in json.loads(out)["error"]
    user, password = basic_registry.credentials  # type: ignore[misc]
    config = tmp_path / "config.json"
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    config.write_text(json.dumps({"auths": {basic_registry.host: {"auth": auth}}}))
    status, out, _ = run(capsys, ref, *common, "--registry-config", str(config))
    assert status == 0 and json.loads(out)["image_id"] == image_factory.oci().config_digest


def test_a_registry_mirror_is_asked_first(capsys: pytest.CaptureFixture, fault_proxy: FaultProxy, pushed: str,
                                          tmp_path: Path, registry: Registry) -> None:
    status, _, _ = run(capsys, pushed, "-o", str(tmp_path / "x.tar"), "--cache-dir", str(tmp_path / "c"), "--json",
                       "--registry-mirror", f"{registry.host}={fault_proxy.url}", "--insecure-registry", "example.org")
    assert status == 0 and fault_proxy.count("GET", "/blobs/") == 3  # the config and two layers


def test_a_terminal_gets_a_progress_bar(capsys: pytest.CaptureFixture, pushed: str, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(["pull", pushed, "-o", str(tmp_path / "x.tar"), "--cache-dir", str(tmp_path / "c")]) == 0
    drawn = terminal.getvalue()
    assert "\r" in drawn and "] " in drawn and "2/2 layers" in drawn
    assert drawn.rsplit("\r\033[K", 1)[-1].startswith(str(tmp_path / "x.tar") + ": image sha256:")


def test_progress_bar_and_summary_texts() -> None:
    stream = io.StringIO()
    progress = TerminalProgress(stream)
    progress.start("img:1", 2000, 2)
    progress.advance(1000)
    progress.layer_done()
    progress.layer_done()
    assert "[###############...............] 1.0 kB/2.0 kB" in stream.getvalue()
    assert stream.getvalue().rstrip().endswith("2/2 layers")
    progress.finish()
    assert stream.getvalue().endswith("\r\033[K")
    assert human_size(433_974_784) == "434.0 MB" and human_size(12) == "12 B"
    assert summary_line("sha256:a", "sha256:b", 2_000_000, 1.234, "x.tar") == \
        "x.tar: image sha256:a (manifest sha256:b), 2.0 MB in 1.23 s"


def test_the_installed_command_runs_pull(pushed: str, tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT), XDG_CACHE_HOME=str(tmp_path / "xdg"))
    done = subprocess.run([sys.executable, "-m", "wes_arvados", "pull", pushed, "-o", str(tmp_path / "x.tar"),
                           "--json"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["output"] == str(tmp_path / "x.tar")
