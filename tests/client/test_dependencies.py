"""What `wes-arvados run` sends: found with the CWL loader (wes_arvados/client/dependencies.py)."""

from __future__ import annotations

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
