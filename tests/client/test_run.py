"""`wes-arvados run` against a real server on the local backend (wes_arvados/cli/run.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import List

import pytest

from ..wes import WesClient, WesServer

DATA = Path(__file__).resolve().parents[1] / "data"
MAKES_A_DIRECTORY = """cwlVersion: v1.2
class: CommandLineTool
baseCommand: [sh, -c, "mkdir -p d/sub && echo a > d/a.txt && echo b > d/sub/b.txt"]
inputs: {}
outputs:
  d: {type: Directory, outputBinding: {glob: d}}
"""
NEEDS_A_MISSING_IMAGE = """cwlVersion: v1.2
class: CommandLineTool
requirements:
  DockerRequirement: {dockerPull: "127.0.0.1:9/none/tool:1"}
baseCommand: "true"
inputs: {}
outputs: {}
"""
SAME_BASENAME = """cwlVersion: v1.2
class: Workflow
inputs: []
outputs:
  a: {type: File, outputSource: one/out}
  b: {type: File, outputSource: two/out}
  again: {type: File, outputSource: one/out}
steps:
  one:
    run: &tool
      class: CommandLineTool
      inputs: {text: string}
      baseCommand: echo
      arguments: [$(inputs.text)]
      stdout: out.txt
      outputs: {out: stdout}
    in: {text: {default: first}}
    out: [out]
  two:
    run: *tool
    in: {text: {default: second}}
    out: [out]
"""
FAILS = """cwlVersion: v1.2
class: CommandLineTool
baseCommand: [sh, -c, "echo failing >&2; exit 3"]
inputs: {}
outputs: {}
"""


def _run(args: List[str], cwd: Path, env_extra: dict = {}) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WES_", "ARVADOS_"))}
    env.update(env_extra)
    return subprocess.run([sys.executable, "-m", "wes_arvados", "run", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_a_run_downloads_its_outputs_and_prints_the_output_object(server: WesServer, tmp_path: Path) -> None:
    (tmp_path / "job.yml").write_text("name: client\n")
    done = _run([str(DATA / "hello.cwl"), "job.yml", "--outdir", "out"], tmp_path,
                {"WES_ARVADOS_SERVER": server.url.split("/ga4gh/")[0]})
    assert done.returncode == 0, done.stderr
    greeting = tmp_path / "out" / "greeting.txt"
    assert greeting.read_text() == "hello client\n"
    assert json.loads(done.stdout) == {"greeting": {
        "class": "File", "basename": "greeting.txt", "location": greeting.as_uri(), "path": str(greeting),
        "size": 13, "checksum": "sha1$2c86d6720056833c96010baea3c2388b6f159b3b"}}
    assert "submitted run" in done.stderr and "COMPLETE" in done.stderr
    assert "task hello.cwl ended, exit code 0" in done.stderr
    quiet = _run([str(DATA / "hello.cwl"), "job.yml", "--outdir", "again", "--quiet", "--server", server.url],
                 tmp_path)
    assert (quiet.returncode, quiet.stderr) == (0, "")

    (tmp_path / "dir.cwl").write_text(MAKES_A_DIRECTORY)
    made = _run(["--server", server.url, "--outdir", "tree", "--quiet", "dir.cwl"], tmp_path)
    assert made.returncode == 0, made.stderr
    tree = tmp_path / "tree" / "d"
    assert (tree / "a.txt").read_text() == "a\n" and (tree / "sub" / "b.txt").read_text() == "b\n"
    d = json.loads(made.stdout)["d"]
    assert (d["class"], d["path"]) == ("Directory", str(tree))
    assert sorted(e["path"] for e in d["listing"]) == [str(tree / "a.txt"), str(tree / "sub")]


def test_a_failed_run_exits_as_cwltool_does_and_errors_are_one_line(server: WesServer, tmp_path: Path) -> None:
    (tmp_path / "fails.cwl").write_text(FAILS)
    plain = subprocess.run([str(Path(sys.executable).with_name("cwltool")), "--outdir", str(tmp_path / "plain"),
                            "fails.cwl"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    ours = _run(["--server", server.url, "fails.cwl"], tmp_path)
    assert plain.returncode != 0 and ours.returncode == plain.returncode, (plain.stderr, ours.stderr)

    submitted = _run(["--server", server.url, "--no-wait", str(DATA / "hello.cwl")], tmp_path)
    # A missing input is found before anything is sent, as cwltool finds it: one line.
    assert submitted.returncode == 1 and "Missing required input parameter 'name'" in submitted.stderr
    assert len(submitted.stderr.strip().splitlines()) == 1
    (tmp_path / "job.yml").write_text("name: later\n")
    queued = _run(["--server", server.url, "--no-wait", str(DATA / "hello.cwl"), "job.yml"], tmp_path)
    assert queued.returncode == 0 and queued.stdout.strip()  # the run id, and no waiting
    # A run the server cannot even start (its image cannot be had) ends SYSTEM_ERROR: non-zero, and the
    # server's own message on one line.
    (tmp_path / "no-image.cwl").write_text(NEEDS_A_MISSING_IMAGE)
    system_error = _run(["--server", server.url, "--quiet", "no-image.cwl"], tmp_path)
    assert system_error.returncode == 1 and len(system_error.stderr.strip().splitlines()) == 1, system_error.stderr
    assert "ended SYSTEM_ERROR" in system_error.stderr and "127.0.0.1:9/none/tool:1" in system_error.stderr
    unreachable = _run(["--server", "http://127.0.0.1:9", str(DATA / "hello.cwl"), "job.yml"], tmp_path)
    assert unreachable.returncode == 1 and "cannot reach" in unreachable.stderr
    assert "Traceback" not in unreachable.stderr


def test_attach_follows_a_run_and_ctrl_c_with_cancel_on_interrupt_cancels_it(server: WesServer, tmp_path: Path) -> None:
    (tmp_path / "job.yml").write_text("name: attached\n")
    submitted = _run(["--server", server.url, "--no-wait", str(DATA / "hello.cwl"), "job.yml"], tmp_path)
    run_id = submitted.stdout.strip()
    attached = _run(["--server", server.url, "--attach", run_id, "--outdir", "out"], tmp_path)
    assert attached.returncode == 0, attached.stderr
    assert (tmp_path / "out" / "greeting.txt").read_text() == "hello attached\n"

    (tmp_path / "nap.yml").write_text("seconds: 120\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WES_", "ARVADOS_"))}
    client = subprocess.Popen([sys.executable, "-m", "wes_arvados", "run", "--server", server.url,
                               "--cancel-on-interrupt", str(DATA / "nap.cwl"), "nap.yml"], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wes = WesClient(server.url)
    try:
        assert client.stderr is not None
        told = [client.stderr.readline() for _ in range(2)]  # "uploading …", then "submitted run …"
        assert told[1].startswith("submitted run"), told
        deadline = time.monotonic() + 60
        while not (running := [r for r in wes.get("/runs").json()["runs"] if r["state"] == "RUNNING"]):
            assert time.monotonic() < deadline and client.poll() is None
            time.sleep(0.2)
        client.send_signal(signal.SIGINT)
        _, stderr = client.communicate(timeout=120)
    finally:
        if client.poll() is None:
            client.kill()
    assert client.returncode == 1 and "CANCELED" in stderr and "Traceback" not in stderr, stderr
    assert wes.status(running[0]["run_id"]) == "CANCELED"

    # Without --cancel-on-interrupt, one Ctrl-C asks; unanswered, the run goes on and the client says how to attach.
    client = subprocess.Popen([sys.executable, "-m", "wes_arvados", "run", "--server", server.url,
                               str(DATA / "nap.cwl"), "nap.yml"], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert client.stderr is not None
        run_id = [client.stderr.readline() for _ in range(2)][1].split()[-1]
        client.send_signal(signal.SIGINT)
        _, stderr = client.communicate(timeout=60)
    finally:
        if client.poll() is None:
            client.kill()
    assert client.returncode == 1 and f"--attach {run_id}" in stderr, stderr
    assert wes.status(run_id) in ("QUEUED", "INITIALIZING", "RUNNING")
    wes.http.post(f"{wes.url}/runs/{run_id}/cancel", timeout=30)


def test_upload_progress_says_how_far_it_is_at_most_every_two_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    from wes_arvados.cli import run as run_module

    clock = [100.0]
    monkeypatch.setattr(run_module.time, "monotonic", lambda: clock[0])
    said: List[str] = []
    progress = run_module.UploadProgress(4_000_000, said.append)
    for _ in range(4):
        progress(1_000_000)
        clock[0] += 1.5
    assert said == ["uploaded 3.0 MB of 4.0 MB (75%)"]  # at 0 s, 1.5 s: too soon; at 3 s: said; at 4.5 s: too soon


def test_outputs_with_one_basename_are_kept_apart_as_cwltool_keeps_them(server: WesServer, tmp_path: Path) -> None:
    (tmp_path / "two.cwl").write_text(SAME_BASENAME)
    plain = subprocess.run([str(Path(sys.executable).with_name("cwltool")), "--quiet", "--outdir", "plain",
                            "two.cwl"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    ours = _run(["--server", server.url, "--outdir", "ours", "two.cwl"], tmp_path)
    assert plain.returncode == ours.returncode == 0, (plain.stderr, ours.stderr)

    def placed(stdout: str, outdir: str) -> dict:
        return {key: (f["basename"], Path(f["path"]).relative_to(tmp_path / outdir).as_posix(),
                      Path(f["path"]).read_text()) for key, f in json.loads(stdout).items()}

    assert placed(ours.stdout, "ours") == placed(plain.stdout, "plain") == {
        "a": ("out.txt", "out.txt", "first\n"), "again": ("out.txt", "out.txt", "first\n"),
        "b": ("out.txt", "out.txt_2", "second\n")}
    assert ours.stderr.count("downloaded ") == 2
