"""find_images loads workflows as cwltool does and reports each process's effective DockerRequirement.

Every document is loaded by the real cwltool; the small ones are written into
tmp_path as JSON (which CWL, being YAML, reads), the conformance suite's
docker-tagged tools are read where the suite lives.
"""

from __future__ import annotations

import json
import logging
import urllib.parse
from pathlib import Path
from typing import Any, Dict, List, Union

import pytest

from wes_arvados.images.cwl import ImageNeed, WorkflowLoadError, find_images
from wes_arvados.images.errors import ImageError

from ..conformance.suite import INDEX, load_tests, suite_dir
from ..wes import require

SUITE_IMAGES = {"docker.io/debian:stable-slim", "docker.io/python:3-slim", "docker.io/bash:4.4",
                "docker.io/alpine:latest"}
SHA = "sha256:" + "ab" * 32


def write(directory: Path, name: str, document: Union[Dict[str, Any], str]) -> Path:
    """`document` (a CWL mapping, or raw text) written to directory/name."""
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(document if isinstance(document, str) else json.dumps(document, indent=1), encoding="utf-8")
    return path


def tool(version: str = "v1.2", **fields: Any) -> Dict[str, Any]:
    """A CommandLineTool with no inputs or outputs, plus `fields`."""
    return {"cwlVersion": version, "class": "CommandLineTool", "inputs": [], "outputs": [],
            "baseCommand": "true", **fields}


def step(run: Any, **fields: Any) -> Dict[str, Any]:
    """A workflow step running `run`, plus `fields`."""
    return {"run": run, "in": [], "out": [], **fields}


def workflow(steps: Dict[str, Any], version: str = "v1.2", **fields: Any) -> Dict[str, Any]:
    """A Workflow with `steps` (name: step, or name: run), plus `fields`."""
    return {"cwlVersion": version, "class": "Workflow", "inputs": [], "outputs": [],
            "steps": {name: s if isinstance(s, dict) and "in" in s else step(s) for name, s in steps.items()},
            **fields}


def docker(**fields: str) -> Dict[str, Any]:
    """A requirements/hints mapping with one DockerRequirement."""
    return {"DockerRequirement": fields}


def pull(image: str, required: bool, *processes: str) -> ImageNeed:
    """The need for an image to pull."""
    return ImageNeed(image=image, source="pull", required=required, processes=processes)


# -- where the requirement is -------------------------------------------------------------------


def test_docker_pull_under_requirements_is_required(tmp_path: Path) -> None:
    path = write(tmp_path, "tool.cwl", tool(requirements=docker(dockerPull="debian:stable-slim")))
    assert find_images(str(path)) == [pull("debian:stable-slim", True, "tool.cwl")]


def test_docker_pull_under_hints_is_not_required(tmp_path: Path) -> None:
    path = write(tmp_path, "tool.cwl", tool(hints=docker(dockerPull="debian:stable-slim")))
    assert find_images(str(path)) == [pull("debian:stable-slim", False, "tool.cwl")]


def test_workflow_requirement_is_inherited_by_a_tool_without_one(tmp_path: Path) -> None:
    write(tmp_path, "tool.cwl", tool())
    path = write(tmp_path, "wf.cwl", workflow({"s1": "tool.cwl"}, requirements=docker(dockerPull="wf:1")))
    assert find_images(str(path)) == [pull("wf:1", True, "tool.cwl")]


def test_workflow_hint_is_inherited_as_a_hint(tmp_path: Path) -> None:
    write(tmp_path, "tool.cwl", tool())
    path = write(tmp_path, "wf.cwl", workflow({"s1": "tool.cwl"}, hints=docker(dockerPull="wf:1")))
    assert find_images(str(path)) == [pull("wf:1", False, "tool.cwl")]


def test_tool_requirement_overrides_the_workflow_requirement(tmp_path: Path) -> None:
    write(tmp_path, "own.cwl", tool(requirements=docker(dockerPull="own:1")))
    write(tmp_path, "plain.cwl", tool())
    path = write(tmp_path, "wf.cwl", workflow({"s1": "own.cwl", "s2": "plain.cwl"},
                                              requirements=docker(dockerPull="wf:1")))
    assert find_images(str(path)) == [pull("own:1", True, "own.cwl"), pull("wf:1", True, "plain.cwl")]


def test_tool_hint_overrides_a_workflow_hint(tmp_path: Path) -> None:
    write(tmp_path, "own.cwl", tool(hints=docker(dockerPull="own:1")))
    path = write(tmp_path, "wf.cwl", workflow({"s1": "own.cwl"}, hints=docker(dockerPull="wf:1")))
    assert find_images(str(path)) == [pull("own:1", False, "own.cwl")]


def test_workflow_requirement_beats_a_tool_hint(tmp_path: Path) -> None:
    # CWL: requirements override hints, whatever level each is written at.
    write(tmp_path, "hinted.cwl", tool(hints=docker(dockerPull="hint:1")))
    path = write(tmp_path, "wf.cwl", workflow({"s1": "hinted.cwl"}, requirements=docker(dockerPull="wf:1")))
    assert find_images(str(path)) == [pull("wf:1", True, "hinted.cwl")]


def test_step_requirement_applies_to_its_own_tool_and_overrides_the_workflow(tmp_path: Path) -> None:
    write(tmp_path, "tool.cwl", tool())
    path = write(tmp_path, "wf.cwl", workflow(
        {"s1": step("tool.cwl", requirements=docker(dockerPull="step:1")), "s2": "tool.cwl"},
        hints=docker(dockerPull="wf:1")))
    assert find_images(str(path)) == [pull("step:1", True, "tool.cwl"), pull("wf:1", False, "tool.cwl")]


def test_steps_are_reported_in_document_order_not_cwltool_order(tmp_path: Path) -> None:
    # cwltool shuffles Workflow.steps when it builds a workflow. (Steps written as
    # a mapping reach cwltool sorted by name; a list keeps the order written.)
    names = [f"t{i}" for i in reversed(range(12))]
    for name in names:
        write(tmp_path, f"{name}.cwl", tool(requirements=docker(dockerPull=f"{name}:1")))
    steps = [{"id": f"s{n}", **step(f"{n}.cwl")} for n in names]
    path = write(tmp_path, "wf.cwl", {**workflow({}), "steps": steps})
    for _ in range(3):
        assert [need.image for need in find_images(str(path))] == [f"{n}:1" for n in names]


def test_needs_are_deduplicated_merged_and_in_order_of_first_appearance(tmp_path: Path) -> None:
    write(tmp_path, "a.cwl", tool(hints=docker(dockerPull="shared:1")))
    write(tmp_path, "b.cwl", tool(requirements=docker(dockerPull="other:1")))
    write(tmp_path, "c.cwl", tool(requirements=docker(dockerPull="shared:1")))
    path = write(tmp_path, "wf.cwl", workflow({"s1": "a.cwl", "s2": "b.cwl", "s3": "c.cwl", "s4": "a.cwl"}))
    assert find_images(str(path)) == [pull("shared:1", True, "a.cwl", "c.cwl"), pull("other:1", True, "b.cwl")]


# -- how the document is put together -----------------------------------------------------------


def _packed() -> Dict[str, Any]:
    return {"cwlVersion": "v1.2", "$graph": [
        {"id": "main", "class": "Workflow", "inputs": [], "outputs": [],
         "requirements": docker(dockerPull="main:1"),
         "steps": [{"id": "step1", "run": "#tool", "in": [], "out": []},
                   {"id": "step2", "run": "#other", "in": [], "out": []}]},
        {"id": "tool", "class": "CommandLineTool", "inputs": [], "outputs": [], "baseCommand": "true"},
        {"id": "other", "class": "CommandLineTool", "inputs": [], "outputs": [], "baseCommand": "true",
         "hints": docker(dockerPull="other:1")},
    ]}


def test_packed_graph_document_runs_main(tmp_path: Path) -> None:
    path = write(tmp_path, "packed.cwl", _packed())
    expected = [pull("main:1", True, "tool", "other")]
    assert find_images(str(path)) == expected
    assert find_images(f"{path}#main") == expected


def test_fragment_selects_one_process_of_a_packed_document(tmp_path: Path) -> None:
    path = write(tmp_path, "packed.cwl", _packed())
    assert find_images(f"{path}#other") == [pull("other:1", False, "other")]
    assert find_images(path.as_uri() + "#other") == [pull("other:1", False, "other")]


def test_run_reference_to_a_file_in_another_directory(tmp_path: Path) -> None:
    write(tmp_path, "tools/tool.cwl", tool(requirements=docker(dockerPull="alpine:3")))
    path = write(tmp_path, "wf.cwl", workflow({"s1": "tools/tool.cwl"}))
    assert find_images(str(path)) == [pull("alpine:3", True, "tools/tool.cwl")]


def test_imported_requirement(tmp_path: Path) -> None:
    write(tmp_path, "docker.yml", {"class": "DockerRequirement", "dockerPull": "imported:1"})
    path = write(tmp_path, "tool.cwl", tool(requirements=[{"$import": "docker.yml"}]))
    assert find_images(str(path)) == [pull("imported:1", True, "tool.cwl")]


def test_inline_subworkflow_inherits_and_names_tools_after_their_steps(tmp_path: Path) -> None:
    inner = workflow({"inner_a": tool(), "inner_b": tool(hints=docker(dockerPull="inner:1"))})
    del inner["cwlVersion"]
    path = write(tmp_path, "wf.cwl", workflow(
        {"outer": inner}, requirements={"SubworkflowFeatureRequirement": {}, **docker(dockerPull="outer:1")}))
    # The workflow's requirement beats the inner tool's hint as well.
    assert find_images(str(path)) == [pull("outer:1", True, "outer/run/inner_a/run", "outer/run/inner_b/run")]


def test_nested_subworkflow_file_requirement_reaches_its_tools(tmp_path: Path) -> None:
    write(tmp_path, "tool.cwl", tool())
    write(tmp_path, "sub.cwl", workflow({"t": "tool.cwl"}, requirements=docker(dockerPull="sub:1")))
    path = write(tmp_path, "wf.cwl", workflow({"s": "sub.cwl", "u": "tool.cwl"},
                                              requirements={"SubworkflowFeatureRequirement": {}},
                                              hints=docker(dockerPull="top:1")))
    assert find_images(str(path)) == [pull("sub:1", True, "tool.cwl"), pull("top:1", False, "tool.cwl")]


@pytest.mark.parametrize("version", ["v1.0", "v1.1"])
def test_older_cwl_versions_are_upgraded(tmp_path: Path, version: str) -> None:
    write(tmp_path, "tool.cwl", tool(version=version, hints=docker(dockerPull="old:1")))
    path = write(tmp_path, "wf.cwl", workflow({"s1": "tool.cwl"}, version=version,
                                              requirements=docker(dockerImageId="old-id:1")))
    assert find_images(str(path)) == [pull("old-id:1", True, "tool.cwl")]


def test_expression_tools_and_operations_need_no_image(tmp_path: Path) -> None:
    expression = {"class": "ExpressionTool", "inputs": [], "outputs": [], "expression": "${return {};}",
                  "requirements": {"InlineJavascriptRequirement": {}, **docker(dockerPull="never:1")}}
    operation = {"class": "Operation", "inputs": [], "outputs": []}
    path = write(tmp_path, "wf.cwl", workflow({"e": expression, "o": operation, "t": tool()}))
    assert find_images(str(path)) == []
    assert find_images(str(path), default_container="default:1") == [pull("default:1", False, "t/run")]


# -- what the requirement names -----------------------------------------------------------------


@pytest.mark.parametrize("image_id", ["debian:stable-slim", "127.0.0.1:5000/x/y:1", "abcdef"])
def test_docker_image_id_that_is_an_image_name_is_pulled(tmp_path: Path, image_id: str) -> None:
    path = write(tmp_path, "tool.cwl", tool(requirements=docker(dockerImageId=image_id)))
    assert find_images(str(path)) == [pull(image_id, True, "tool.cwl")]


@pytest.mark.parametrize("image_id", [SHA, "ab" * 32, "0123456789ab", "sha256:0123456789ab"])
def test_docker_image_id_that_is_an_id_is_not_pulled(tmp_path: Path, image_id: str) -> None:
    path = write(tmp_path, "tool.cwl", tool(requirements=docker(dockerImageId=image_id)))
    assert find_images(str(path)) == [ImageNeed(image_id, "id", True, ("tool.cwl",))]


def test_docker_pull_names_the_image_when_docker_image_id_is_given_too(tmp_path: Path) -> None:
    path = write(tmp_path, "tool.cwl", tool(requirements=docker(dockerPull="debian:12", dockerImageId=SHA)))
    assert find_images(str(path)) == [pull("debian:12", True, "tool.cwl")]


def test_docker_load_is_resolved_against_the_document_that_names_it(tmp_path: Path) -> None:
    write(tmp_path, "tools/own.cwl", tool(requirements=docker(dockerLoad="own.tar", dockerImageId="own:1")))
    write(tmp_path, "tools/plain.cwl", tool())
    path = write(tmp_path, "wf.cwl", workflow({"s1": "tools/own.cwl", "s2": "tools/plain.cwl"},
                                              hints=docker(dockerLoad="images/wf.tar")))
    assert find_images(str(path)) == [
        ImageNeed("own:1", "load", True, ("tools/own.cwl",), location=(tmp_path / "tools/own.tar").as_uri()),
        ImageNeed("", "load", False, ("tools/plain.cwl",), location=(tmp_path / "images/wf.tar").as_uri()),
    ]


def test_docker_load_path_is_quoted_into_the_uri(tmp_path: Path) -> None:
    path = write(tmp_path, "tool.cwl", tool(hints=docker(dockerLoad="my image%1.tar")))
    [need] = find_images(str(path))
    assert need.location == (tmp_path / "my image%1.tar").as_uri()
    assert urllib.parse.unquote(urllib.parse.urlsplit(need.location).path) == str(tmp_path / "my image%1.tar")


def test_docker_load_url_is_kept_as_written(tmp_path: Path) -> None:
    url = "https://example.org/images/x.tar?token=1"
    path = write(tmp_path, "tool.cwl", tool(hints=docker(dockerLoad=url, dockerImageId="x:1")))
    assert find_images(str(path)) == [ImageNeed("x:1", "load", False, ("tool.cwl",), location=url)]


def test_docker_file_from_include(tmp_path: Path) -> None:
    write(tmp_path, "Dockerfile", "FROM debian:stable-slim\nRUN true\n")
    requirement = {"DockerRequirement": {"dockerFile": {"$include": "Dockerfile"}, "dockerImageId": "built:1"}}
    path = write(tmp_path, "tool.cwl", tool(requirements=requirement))
    assert find_images(str(path)) == [ImageNeed("built:1", "file", True, ("tool.cwl",))]


def test_docker_file_is_built_even_with_docker_pull_as_cwltool_does(tmp_path: Path) -> None:
    path = write(tmp_path, "a.cwl", tool(hints=docker(dockerFile="FROM scratch\n", dockerPull="tagged:1")))
    assert find_images(str(path)) == [ImageNeed("tagged:1", "file", False, ("a.cwl",))]
    path = write(tmp_path, "b.cwl", tool(hints=docker(dockerFile="FROM scratch\n")))
    assert find_images(str(path)) == [ImageNeed("", "file", False, ("b.cwl",))]


def test_docker_import(tmp_path: Path) -> None:
    path = write(tmp_path, "tool.cwl", tool(requirements=docker(dockerImport="rootfs.tar.gz", dockerImageId="imp:1")))
    assert find_images(str(path)) == [
        ImageNeed("imp:1", "import", True, ("tool.cwl",), location=(tmp_path / "rootfs.tar.gz").as_uri())]


def test_default_container_only_for_tools_without_a_docker_requirement(tmp_path: Path) -> None:
    write(tmp_path, "plain.cwl", tool())
    write(tmp_path, "hinted.cwl", tool(hints=docker(dockerPull="hint:1")))
    path = write(tmp_path, "wf.cwl", workflow({"s1": "plain.cwl", "s2": "hinted.cwl"}))
    assert find_images(str(path), default_container="default:1") == [
        pull("default:1", False, "plain.cwl"), pull("hint:1", False, "hinted.cwl")]
    assert find_images(str(path)) == [pull("hint:1", False, "hinted.cwl")]


# -- failures and manners -----------------------------------------------------------------------


def test_invalid_document_raises_workflow_load_error(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.cwl", tool(outputs="not a list of outputs", baseCommand=7))
    with pytest.raises(WorkflowLoadError, match="bad.cwl") as caught:
        find_images(str(path))
    assert isinstance(caught.value, ImageError)
    assert caught.value.document == str(path)


def test_missing_file_raises_workflow_load_error(tmp_path: Path) -> None:
    with pytest.raises(WorkflowLoadError, match="missing.cwl"):
        find_images(str(tmp_path / "missing.cwl"))


def test_missing_run_target_raises_workflow_load_error(tmp_path: Path) -> None:
    path = write(tmp_path, "wf.cwl", workflow({"s1": "nowhere.cwl"}))
    with pytest.raises(WorkflowLoadError, match="wf.cwl"):
        find_images(str(path))


def test_remote_documents_are_not_fetched(tmp_path: Path) -> None:
    path = write(tmp_path, "wf.cwl", workflow({"s1": "http://127.0.0.1:9/tool.cwl"}))
    with pytest.raises(WorkflowLoadError) as caught:
        find_images(str(path))
    # schema-salad wraps its messages to the terminal's width.
    assert "not fetching remote document http://127.0.0.1:9/tool.cwl" in " ".join(str(caught.value).split())


def test_loading_prints_nothing_and_leaves_loggers_as_they_were(tmp_path: Path,
                                                                capfd: pytest.CaptureFixture[str]) -> None:
    loggers = [logging.getLogger(name) for name in ("cwltool", "salad")]
    filters = [list(logger.filters) for logger in loggers]
    write(tmp_path, "tool.cwl", tool(hints=docker(dockerPull="x:1")))
    path = write(tmp_path, "wf.cwl", workflow({"s1": "tool.cwl"}, version="v1.0"))
    find_images(str(path))
    with pytest.raises(WorkflowLoadError):
        find_images(str(write(tmp_path, "bad.cwl", tool(inputs=3))))
    assert capfd.readouterr() == ("", "")
    assert [list(logger.filters) for logger in loggers] == filters


def test_twenty_steps_of_one_tool_need_its_image_once(tmp_path: Path) -> None:
    write(tmp_path, "tool.cwl", tool(hints=docker(dockerPull="x:1")))
    path = write(tmp_path, "wf.cwl", workflow({f"s{i}": "tool.cwl" for i in range(20)}))
    assert find_images(str(path)) == [pull("x:1", False, "tool.cwl")]


# -- the conformance suite ----------------------------------------------------------------------


def test_docker_conformance_tools_need_only_the_suite_images() -> None:
    require((suite_dir() / INDEX).is_file(), f"the CWL v1.2 conformance suite is missing: {suite_dir() / INDEX}")
    tools = sorted({t.tool for t in load_tests() if "docker" in t.tags})
    assert tools, "no conformance test is tagged docker"
    problems: List[str] = []
    for cwl in tools:
        needs = find_images(cwl)
        if not needs or {n.image for n in needs} - SUITE_IMAGES or {n.source for n in needs} != {"pull"}:
            problems.append(f"{cwl}: {needs}")
    assert not problems, "\n".join(problems)
