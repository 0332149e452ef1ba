"""Pinning staged workflows' images by portable data hash (wes_arvados/arvados/pin.py)."""

from __future__ import annotations

from pathlib import Path

import yaml

from wes_arvados.arvados.pin import PDH_KEY, pin_images
from wes_arvados.images.cwl import find_images

PORTED = "127.0.0.1:5000/tools/echo:1"
DIGESTED = "debian@sha256:" + "a" * 64
PDH = {PORTED: "d41d8cd98f00b204e9800998ecf8427e+0", DIGESTED: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa+128"}

WORKFLOW = f"""\
cwlVersion: v1.2
class: Workflow
# a comment the user wrote
requirements:
  DockerRequirement:
    dockerPull: {DIGESTED}
inputs: []
outputs: []
steps:
  inline:
    run:
      class: CommandLineTool
      baseCommand: [echo, hi]
      requirements:
        - class: DockerRequirement
          dockerPull: "{PORTED}"
      inputs: []
      outputs: []
    in: []
    out: []
  inherits:
    run: tools/plain.cwl
    in: []
    out: []
  other:
    run: tools/unknown.cwl
    in: []
    out: []
"""
PLAIN = """\
cwlVersion: v1.2
class: CommandLineTool
baseCommand: [echo, plain]
inputs: []
outputs: []
"""
UNKNOWN = """\
cwlVersion: v1.2
class: CommandLineTool
hints:
  - class: DockerRequirement
    dockerPull: not/stored:1
baseCommand: [echo, other]
inputs: []
outputs: []
"""


def _stage(tmp_path: Path) -> Path:
    (tmp_path / "tools").mkdir()
    (tmp_path / "wf.cwl").write_text(WORKFLOW)
    (tmp_path / "tools" / "plain.cwl").write_text(PLAIN)
    (tmp_path / "tools" / "unknown.cwl").write_text(UNKNOWN)
    (tmp_path / "inputs.yml").write_text("message: DockerRequirement is only a word here\n")
    return tmp_path


def test_every_stored_image_is_pinned_where_it_is_named_and_nothing_else_changes(tmp_path: Path) -> None:
    staged = _stage(tmp_path)
    before = find_images(str(staged / "wf.cwl"))
    assert pin_images(staged, PDH) == ["wf.cwl"]
    text = (staged / "wf.cwl").read_text()
    assert "# a comment the user wrote" in text
    document = yaml.safe_load(text)
    assert document["requirements"]["DockerRequirement"] == {"dockerPull": DIGESTED, PDH_KEY: PDH[DIGESTED]}
    assert document["steps"]["inline"]["run"]["requirements"][0][PDH_KEY] == PDH[PORTED]
    assert (staged / "tools" / "unknown.cwl").read_text() == UNKNOWN  # its image was not stored: untouched
    assert (staged / "inputs.yml").read_text() == "message: DockerRequirement is only a word here\n"
    # Still a valid workflow, needing the same images (the step without its own inherits the pinned one).
    assert find_images(str(staged / "wf.cwl")) == before
    assert pin_images(staged, PDH) == []  # pinning again changes nothing


def test_the_pins_survive_cwltools_loading_and_arvados_cwl_runner_takes_them_without_parsing_names(
        tmp_path: Path) -> None:
    import arvados_cwl.arvdocker
    from arvados_cwl.context import ArvRuntimeContext
    from cwltool.context import LoadingContext
    from cwltool.load_tool import load_tool

    staged = _stage(tmp_path)
    pin_images(staged, PDH)
    workflow = load_tool(str(staged / "wf.cwl"), LoadingContext({"do_update": True}))
    runtime, found = ArvRuntimeContext(), {}
    for step in workflow.steps:
        requirement, _ = step.embedded_tool.get_requirement("DockerRequirement")
        # With the key, a-c-r returns it before it would parse the name or ask the API anything (api=None).
        found[step.id.rsplit("#", 1)[-1]] = arvados_cwl.arvdocker.arv_docker_get_image(None, requirement, False, runtime) \
            if PDH_KEY in requirement else requirement["dockerPull"]
    # The workflow's requirement beats the hint of "other" (CWL: requirements over hints), pinned too.
    assert found == {"inline": PDH[PORTED], "inherits": PDH[DIGESTED], "other": PDH[DIGESTED]}
