"""CI part of the CWL v1.2 conformance comparison: a representative subset.

The same ~50 non-docker tests run with the project's plain cwltool and through
the WES server, with toil-wes-cwl-runner and with our own client `wes-arvados
run` (checked by plain cwltest: it downloads the outputs); every test that plain
cwltool passes must pass through both. `wes-arvados run` also runs the four
tests that toil-wes-cwl-runner cannot pass (suite.CLIENT_LIMITATIONS).  They run without containers (``--no-container``); the
docker part of the CI subset is test_conformance_docker.py.  The counts are
printed at the end of pytest's output (tests/conformance/conftest.py).  `make
conformance` runs the whole suite, with containers.

The subset was chosen once, deterministically, and is fixed here: for each tag
family below (and for should_fail tests), tests spread evenly over the suite's
order among those plain cwltool passes in a few seconds; plus a handful of
basic ones (command line generation with a helper script attachment,
stdin/stdout/stderr, Directory outputs, a colon in an output path).  `test_subset_covers_the_families`
keeps it honest.
"""

from __future__ import annotations

from typing import Dict, List, Tuple

import pytest

from ..wes import WesServer, require
from . import suite

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

# Tag families the subset must cover, with the least number of tests for each.
FAMILIES: Dict[str, int] = {
    "required": 10, "command_line_tool": 6, "expression_tool": 4, "workflow": 6, "scatter": 3, "subworkflow": 3,
    "inline_javascript": 3, "initial_work_dir": 4, "shell_command": 3, "step_input": 3, "multiple_input": 3,
    "conditional": 3, "env_var": 2, "schema_def": 2, "secondary_files": 2, "format_checking": 2,
    "inputs_should_parse": 2, "json_schema_invalid": 1, "load_listing": 2, "resource": 2, "inplace_update": 1,
    "input_object_requirements": 1, "multiple": 1, "timelimit": 1, "work_reuse": 1,
}
SHOULD_FAIL = 6

SUBSET: Tuple[str, ...] = (
    "cl_basic_generation",  # required, command_line_tool
    "cl_optional_bindings_provided",  # required, command_line_tool
    "stderr_redirect",  # shell_command, command_line_tool
    "expression_any_null_nodefaultany",  # inline_javascript, expression_tool; should_fail
    "stdinout_redirect",  # required, command_line_tool
    "wf_scatter_dotproduct_twoempty",  # scatter, workflow
    "requirement_priority",  # env_var, workflow
    "requirement_override_hints",  # env_var, workflow
    "schemadef_req_tool_param",  # schema_def, command_line_tool
    "param_evaluation_noexpr",  # required, command_line_tool
    "record_output_binding",  # shell_command, command_line_tool
    "wf_scatter_oneparam_valuefrom_twice_current_el",  # scatter, step_input, workflow
    "directory_output",  # required, command_line_tool
    "dynamic_initial_workdir",  # shell_command, initial_work_dir, command_line_tool
    "writable_stagedfiles",  # initial_work_dir, command_line_tool
    "input_file_literal",  # required, command_line_tool
    "exprtool_directory_literal",  # inline_javascript, expression_tool
    "outputbinding_glob_sorted",  # required, command_line_tool
    "resreq_step_overrides_wf",  # resource, workflow
    "wf_step_access_undeclared_param",  # required, workflow, inputs_should_parse; should_fail
    "job_input_secondary_subdirs",  # shell_command, command_line_tool
    "workflow_embedded_subworkflow_embedded_subsubworkflow",  # workflow, subworkflow, inline_javascript
    "workflow_integer_input_default_and_tool_integer_input_default",  # workflow, inline_javascript, expression_tool
    "stdin_from_directory_literal_with_literal_file",  # command_line_tool, required
    "schema-def_anonymous_enum_in_array",  # command_line_tool, schema_def
    "secondary_files_in_output_records",  # command_line_tool, required
    # command_line_tool, format_checking, inputs_should_parse; should_fail
    "input_records_file_entry_with_format_and_bad_entry_file_format",
    "record_output_file_entry_format",  # command_line_tool, format_checking
    "workflow_input_inputBinding_loadContents",  # workflow, step_input, inline_javascript, expression_tool
    "workflow_step_in_loadContents",  # workflow, step_input, inline_javascript, expression_tool
    "timelimit_expressiontool",  # expression_tool, timelimit, inline_javascript
    # workflow, timelimit, inline_javascript, work_reuse, inputs_should_parse; should_fail
    "timelimit_from_expression_wf",
    "initial_work_dir_for_array_dirs",  # resource, command_line_tool, initial_work_dir
    "cwl_requirements_override_expression",  # command_line_tool, input_object_requirements
    "modify_directory_content",  # inplace_update, workflow
    "listing_requirement_none",  # command_line_tool, load_listing
    "listing_requirement_shallow",  # command_line_tool, load_listing
    "any_input_param_graph_no_default_hashmain",  # required, command_line_tool
    "pass_through_required_true_when",  # conditional, inline_javascript, multiple_input, workflow
    "first_non_null_second_non_null_nojs",  # conditional, multiple_input, workflow
    "pass_through_required_the_only_non_null_nojs",  # conditional, multiple_input, workflow
    "pass_through_required_fail_nojs",  # conditional, multiple_input, workflow, inputs_should_parse; should_fail
    "cond-with-defaults-2",  # conditional, scatter, multiple, workflow
    "command_input_file_expression",  # inline_javascript, secondary_files, command_line_tool, shell_command
    "command_output_file_expression",  # inline_javascript, secondary_files, command_line_tool
    "invalid_syntax_v11_uses_v12_tool",  # command_line_tool, json_schema_invalid; should_fail
    "iwd-jsondump2",  # initial_work_dir, command_line_tool
    "iwd-fileobjs2",  # initial_work_dir, command_line_tool
    "flat_crossproduct_simple_scatter",  # workflow, subworkflow, scatter, inline_javascript, expression_tool
    "flat_crossproduct_flat_crossproduct_scatter",  # workflow, subworkflow, scatter, inline_javascript, expression_tool
    "colon_in_output_path",  # command_line_tool
    "record_with_default",  # required, command_line_tool
    "very_big_and_very_floats_nojs",  # required, command_line_tool
)

# Tests no server can pass through toil-wes-cwl-runner (suite.CLIENT_LIMITATIONS): our client must pass them.
CLIENT_EXTRA: Tuple[str, ...] = tuple(suite.CLIENT_LIMITATIONS)
CWLTOOL_JOBS = 2  # two cores
WES_JOBS = 4  # the server runs 2 at once; the other clients are busy attaching and polling
TIMEOUT = 240  # per test


@pytest.fixture(scope="module")
def subset() -> List[suite.ConformanceTest]:
    """The subset's tests, from the suite beside the project."""
    missing = suite.missing_prerequisites()
    require(not missing, "missing: " + "; ".join(missing))
    return suite.pick(suite.without_tags(suite.load_tests()), SUBSET)


@pytest.fixture(scope="module")
def by_id(subset: List[suite.ConformanceTest]) -> Dict[str, suite.ConformanceTest]:
    """The subset's tests and CLIENT_EXTRA, by id."""
    return {t.id: t for t in subset + suite.pick(suite.load_tests(), CLIENT_EXTRA)}


Outcomes = Tuple[Dict[str, suite.Result], Dict[str, suite.Result], Dict[str, suite.Result]]


@pytest.fixture(scope="module")
def outcomes(subset: List[suite.ConformanceTest], tmp_path_factory: pytest.TempPathFactory) -> Outcomes:
    """Run the subset with plain cwltool, then through a fresh server with toil-wes-cwl-runner and with
    `wes-arvados run` (which also runs CLIENT_EXTRA); the three results by test id."""
    work = tmp_path_factory.mktemp("conformance")
    extra = suite.pick(suite.load_tests(), CLIENT_EXTRA)
    clock = suite.Stopwatch()
    plain = suite.run_cwltest(subset + extra, suite.cwltool_runner(), work / "cwltool", jobs=CWLTOOL_JOBS,
                              timeout=TIMEOUT)
    plain_seconds = clock.seconds
    server = suite.start_server(WesServer(work / "state", workers=2, max_concurrent_runs=2))
    try:
        clock = suite.Stopwatch()
        wes = suite.run_cwltest(subset, suite.wes_runner(server.url), work / "wes", jobs=WES_JOBS, timeout=TIMEOUT)
        wes_seconds = clock.seconds
        clock = suite.Stopwatch()
        ours = suite.run_cwltest(subset + extra, suite.client_runner(server.url), work / "client", jobs=WES_JOBS,
                                 timeout=TIMEOUT)
        ours_seconds = clock.seconds
    finally:
        server.stop()
        server.kill_runs()
    suite.add_summary([
        f"without containers ({len(subset)} tests, {' '.join(suite.ENGINE_OPTIONS)}; "
        f"wes-arvados run also the {len(extra)} that toil-wes-cwl-runner cannot pass):",
        f"{suite.count_line('cwltool', plain)}  [{plain_seconds:.0f} s]",
        f"{suite.count_line('WES', wes)}  [{wes_seconds:.0f} s]",
        f"{suite.count_line('wes-arvados run', ours)}  [{ours_seconds:.0f} s]",
    ])
    everything = subset + extra
    different = suite.differences(subset, plain, wes) + suite.differences(everything, plain, ours)
    if different:
        unique = list({t.id: t for t in different}.values())
        missing = suite.Result("", "-")
        table = suite.outcome_table(unique, [("cwltool", plain), ("WES", {**{t.id: missing for t in extra}, **wes}),
                                             ("wes-arvados run", ours)], suite.CLIENT_LIMITATIONS)
        suite.SUMMARY += ["", table]
    suite.SUMMARY.append(f"reports: {work}/{{cwltool,wes,client}}/junit.xml; server log: {server.log_path}")
    return plain, wes, ours


def test_subset_covers_the_families(subset: List[suite.ConformanceTest]) -> None:
    assert 40 <= len(subset) <= 60
    assert len(set(SUBSET)) == len(SUBSET)
    for tag, least in FAMILIES.items():
        assert sum(tag in t.tags for t in subset) >= least, tag
    assert sum(t.should_fail for t in subset) >= SHOULD_FAIL
    assert not set(suite.EXCLUDED_TAGS).intersection(*(t.tags for t in subset))
    # Tests no server could pass through toil-wes-cwl-runner would only add noise.
    assert not set(SUBSET) & set(suite.CLIENT_LIMITATIONS)


def test_plain_cwltool_passes_most_of_the_subset(
        subset: List[suite.ConformanceTest],
        outcomes: Outcomes) -> None:
    # The comparison below means little if the baseline itself broke.
    plain, _, _ = outcomes
    failing = [t.id for t in subset if plain[t.id].outcome != suite.PASSED]
    assert len(failing) <= len(subset) // 10, f"plain cwltool does not pass: {failing}"


@pytest.mark.parametrize("runner,test_id", [("WES", t) for t in SUBSET]
                         + [("wes-arvados run", t) for t in SUBSET + CLIENT_EXTRA])
def test_through_the_server_passes_what_cwltool_passes(runner: str, test_id: str,
                                                       by_id: Dict[str, suite.ConformanceTest],
                                                       outcomes: Outcomes) -> None:
    # WES: through toil-wes-cwl-runner; wes-arvados run: through our own client.
    plain, wes, ours = outcomes
    missed = suite.shortfall(by_id[test_id], plain, wes if runner == "WES" else ours, runner)
    if missed:
        pytest.fail(missed, pytrace=False)
