"""What `wes-arvados run` sends: found with the CWL loader (wes_arvados/client/dependencies.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from wes_arvados.client.dependencies import DependencyError, find

WORKFLOW = """cwlVersion: v1.2
class: Workflow
requirements:
  SchemaDefRequirement:
    types:
      - $import: types/greeting.yml
inputs:
  ref:
    type: File
    secondaryFiles: [.fai]
    default: {class: File, location: data/ref.fa}
  reads: File
  extra: Directory
  remote: File
outputs: []
steps:
  greet:
    run: tools/greet.cwl
    in: {ref: ref}
    out: []
"""
TOOL = """cwlVersion: v1.2
class: CommandLineTool
requirements:
  InlineJavascriptRequirement:
    expressionLib:
      - {$include: lib.js}
inputs:
  ref: {type: File, secondaryFiles: [.fai]}
outputs: []
baseCommand: "true"
"""


def _write(root: Path, files: dict) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def test_every_document_the_loader_reads_and_every_input_file_is_sent_under_a_relative_name(tmp_path: Path) -> None:
    _write(tmp_path / "project", {
        "wf.cwl": WORKFLOW, "tools/greet.cwl": TOOL, "tools/lib.js": "var x = 1;",
        "types/greeting.yml": "name: greeting\ntype: record\nfields: {a: string}\n",
        "data/ref.fa": ">r\nACGT\n", "data/ref.fa.fai": "r\t4\n", "data/unused.txt": "not needed\n"})
    _write(tmp_path / "elsewhere", {"reads.fq": "@r\nACGT\n", "dir/a.txt": "a", "dir/sub/b.txt": "b"})
    job = {"reads": {"class": "File", "path": "../elsewhere/reads.fq"},
           "extra": {"class": "Directory", "location": "../elsewhere/dir"},
           "remote": {"class": "File", "location": "https://example.org/remote.txt"}}
    found = find(tmp_path / "project" / "wf.cwl", job, tmp_path / "project")
    # Names are relative to the folder holding them all, so the documents' references still hold.
    assert found.workflow == "project/wf.cwl"
    assert [a.name for a in found.attachments] == [
        "elsewhere/dir/a.txt", "elsewhere/dir/sub/b.txt", "elsewhere/reads.fq",
        "project/data/ref.fa", "project/data/ref.fa.fai",  # a default, with the secondaryFile its pattern names
        "project/tools/greet.cwl", "project/tools/lib.js",  # run:, and $include
        "project/types/greeting.yml", "project/wf.cwl"]  # a schema-def $import
    assert all(a.path.read_bytes() == (tmp_path / a.name).read_bytes() for a in found.attachments)
    assert found.job == {"reads": {"class": "File", "location": "elsewhere/reads.fq"},
                         "extra": {"class": "Directory", "location": "elsewhere/dir"},
                         "remote": {"class": "File", "location": "https://example.org/remote.txt"}}  # for the server


def test_a_missing_input_or_an_invalid_workflow_is_one_clear_error(tmp_path: Path) -> None:
    _write(tmp_path, {"tool.cwl": TOOL.replace("{$include: lib.js}", "var y = 2;"), "bad.cwl": "class: Nothing\n"})
    with pytest.raises(DependencyError, match="ref.fa"):
        find(tmp_path / "tool.cwl", {"ref": {"class": "File", "location": "ref.fa"}}, tmp_path)
    with pytest.raises(DependencyError, match="bad.cwl"):
        find(tmp_path / "bad.cwl", {}, tmp_path)


EXPRESSIONS = """cwlVersion: v1.2
class: CommandLineTool
requirements:
  InlineJavascriptRequirement: {}
inputs:
  fasta:
    type: {type: array, items: File}
    inputBinding: {position: $(1 + 1)}
    secondaryFiles:
      - {pattern: .fai, required: true}
      - .bai?
      - ^.dict?
      - "${ return self.nameroot == 'a' ? self.basename + '.by-expression' : null; }"
      - {pattern: .dat, required: $(inputs.strict)}
  strict: boolean?
baseCommand: "true"
outputs: []
"""


FIND = """import json, sys
from pathlib import Path
from wes_arvados.client.dependencies import DependencyError, find
try:
    needs = find(Path(sys.argv[1]), json.loads(sys.argv[2]), Path(sys.argv[3]))
except DependencyError as exc:
    print(json.dumps({"error": str(exc)}))
else:
    print(json.dumps({"sent": sorted(a.name for a in needs.attachments)}))
"""


def _find_without_node(tmp_path: Path, job: dict) -> dict:
    """find() in a process whose PATH has no node (nor docker, which cwltool would try next)."""
    empty = tmp_path / "empty-bin"
    empty.mkdir(exist_ok=True)
    done = subprocess.run([sys.executable, "-c", FIND, str(tmp_path / "tool.cwl"), json.dumps(job), str(tmp_path)],
                          env={**os.environ, "PATH": str(empty)}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


@pytest.mark.parametrize("node", [True, False], ids=["with-node", "without-node"])
def test_secondary_files_are_found_with_node_and_by_their_plain_patterns_without(tmp_path: Path, node: bool) -> None:
    # Without Node.js (a laptop), cwltool's binding would fail on the position expression.
    (tmp_path / "tool.cwl").write_text(EXPRESSIONS)
    for name in ("a.fa", "a.fa.fai", "a.dict", "a.fa.by-expression", "b.fa", "b.fa.fai", "b.fa.bai", "b.fa.dat"):
        (tmp_path / name).write_text(name)
    job = {"fasta": [{"class": "File", "location": "a.fa"}, {"class": "File", "location": "b.fa"}]}

    def sent() -> dict:
        if node:
            try:
                return {"sent": sorted(a.name for a in find(tmp_path / "tool.cwl", job, tmp_path).attachments)}
            except DependencyError as exc:
                return {"error": str(exc)}
        return _find_without_node(tmp_path, job)

    plain = {"tool.cwl", "a.fa", "a.fa.fai", "a.dict", "b.fa", "b.fa.fai", "b.fa.bai", "b.fa.dat"}
    # An expression's file goes only when it can be evaluated; without node, the server evaluates it.
    assert sent() == {"sent": sorted(plain | {"a.fa.by-expression"} if node else plain)}
    (tmp_path / "b.fa.fai").unlink()
    assert "b.fa.fai" in sent()["error"]
