"""Shows the conformance counts of each part of the CI subset that ran, at the end of pytest's output."""

from __future__ import annotations

from .suite import SUMMARY


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    """Print what the conformance tests put in `suite.SUMMARY`."""
    if SUMMARY:
        terminalreporter.write_sep("=", "CWL v1.2 conformance subsets: plain cwltool vs. WES")
        for line in SUMMARY:
            terminalreporter.write_line(line)
