"""`workflow_engine_parameters`: which of an engine's options a client may set, and how they are checked.

Each backend's engine (cwltool locally, arvados-cwl-runner on Arvados) has an
`EngineOptions` table: flags that only change how the engine runs the workflow,
options with a value and its check, options the server sets for every run (a
client's value is ignored with a note, since clients such as toil-wes-cwl-runner
always send their own ``--outdir``), and options refused because they would escape
the run's sandbox. Anything else is ignored with a note in system_logs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, FrozenSet, List, Mapping, Optional, Tuple

from ..errors import BadRequest

_FALSE = ("false", "0", "no", "off")


@dataclass(frozen=True)
class Valued:
    """An option with a value: its WES type, default (as shown in service-info) and check."""

    type: str
    default: str
    check: Callable[[str], bool]


@dataclass(frozen=True)
class EngineOptions:
    """The options of one engine that WES clients may set, and those they may not."""

    flags: FrozenSet[str]
    valued: Mapping[str, Valued]
    server_controlled: FrozenSet[str]
    refused: Mapping[str, str]  # option → why it is refused
    flag_defaults: Mapping[str, str] = field(default_factory=dict)  # shown in service-info; else "false"

    def options(self, parameters: Optional[Dict[str, Optional[str]]]) -> Tuple[List[str], List[str]]:
        """Map workflow_engine_parameters to command-line options; return them and notes for system_logs.

        Keys may be given with or without their leading ``--``. `BadRequest` names a
        refused option or a value that fails its check.
        """
        options: List[str] = []
        notes: List[str] = []
        given = {(k if k.startswith("-") else "--" + k): (k, v) for k, v in (parameters or {}).items()}
        for key, (raw_key, value) in sorted(given.items()):
            if key in self.refused:
                raise BadRequest(f"workflow_engine_parameters: {raw_key} is not allowed: {self.refused[key]}")
            if key in self.server_controlled:
                notes.append(f"workflow_engine_parameters: {raw_key} ignored: the server sets it")
            elif key in self.flags:
                if value is None or str(value).strip().lower() not in _FALSE:
                    options.append(key)
            elif key in self.valued:
                if value is None:
                    raise BadRequest(f"workflow_engine_parameters: {raw_key} needs a value")
                try:
                    valid = self.valued[key].check(str(value))
                except ValueError:
                    valid = False
                if not valid:
                    raise BadRequest(f"workflow_engine_parameters: {raw_key}={value!r} is not a valid value")
                options += [key, str(value)]
            else:
                notes.append(f"workflow_engine_parameters: {raw_key} ignored: not an option this server accepts")
        return options, notes

    def defaults(self) -> List[dict]:
        """The parameters clients may set, as WES `DefaultWorkflowEngineParameter` objects."""
        params = [{"name": f, "type": "boolean", "default_value": self.flag_defaults.get(f, "false")}
                  for f in sorted(self.flags)]
        params += [{"name": k, "type": v.type, "default_value": v.default} for k, v in sorted(self.valued.items())]
        return params


def positive_number(value: str) -> bool:
    """A number above zero."""
    return float(value) > 0


def integer_in(low: int, high: Optional[int] = None) -> Callable[[str], bool]:
    """A check that a value is a whole number in [low, high]."""
    return lambda value: int(value) >= low and (high is None or int(value) <= high)


def one_of(*choices: str) -> Callable[[str], bool]:
    """A check that a value is one of `choices`."""
    return lambda value: value in choices


def not_blank(value: str) -> bool:
    """Any text with something in it."""
    return bool(value.strip())
