"""Records behave as the dataclasses they replace on the pull path: checked side by side with `dataclasses`."""

from __future__ import annotations

import dataclasses
import pickle
import subprocess
import sys
from typing import Dict, List, Optional

import pytest

from wes_arvados.records import FrozenRecordError, asdict, field, record, replace


@record(frozen=True)
class Point:
    """A frozen record with a default and a field left out of the hash."""

    x: int
    y: int = 0
    tags: Dict[str, str] = field(default_factory=dict, hash=False)


@dataclasses.dataclass(frozen=True)
class DataPoint:
    """The same, as a dataclass."""

    x: int
    y: int = 0
    tags: Dict[str, str] = dataclasses.field(default_factory=dict, hash=False)


@record
class Options:
    """A mutable record with factories and a secret kept out of repr."""

    hosts: List[str] = field(default_factory=list)
    token: str = field(default="", repr=False)
    inner: Optional[Point] = None


def test_construction_equality_and_repr_are_those_of_the_dataclass() -> None:
    for args, kwargs in [((1,), {}), ((1, 2), {}), ((), {"x": 3, "y": 4}), ((5,), {"tags": {"a": "b"}})]:
        ours, theirs = Point(*args, **kwargs), DataPoint(*args, **kwargs)
        assert repr(ours) == repr(theirs).replace("DataPoint", "Point")
        assert (ours.x, ours.y, ours.tags) == (theirs.x, theirs.y, theirs.tags)
    assert Point(1, 2) == Point(1, 2) and Point(1, 2) != Point(2, 1)
    assert Point(1) != DataPoint(1) and Point(1).__eq__((1, 0, {})) is NotImplemented
    assert Point(1).tags is not Point(1).tags  # a fresh default from the factory each time
    assert Point.__match_args__ == ("x", "y", "tags")


def test_bad_arguments_are_refused_as_python_refuses_them() -> None:
    with pytest.raises(TypeError, match="missing required argument: 'x'"):
        Point()
    with pytest.raises(TypeError, match="unexpected keyword argument 'z'"):
        Point(1, z=2)
    with pytest.raises(TypeError, match="multiple values for argument 'x'"):
        Point(1, x=2)
    with pytest.raises(TypeError, match="takes 3 positional arguments but 4 were given"):
        Point(1, 2, {}, 4)


def test_frozen_records_hash_by_their_fields_and_refuse_assignment() -> None:
    assert hash(Point(1, 2, {"a": "b"})) == hash(Point(1, 2)) == hash(DataPoint(1, 2))  # tags: hash=False
    assert len({Point(1), Point(1), Point(2)}) == 2
    point = Point(1)
    with pytest.raises(FrozenRecordError):
        point.x = 2  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del point.y  # type: ignore[misc]
    assert point.x == 1


def test_mutable_records_are_assignable_and_unhashable_with_secrets_out_of_repr() -> None:
    options = Options(["a"], "s3cret")
    options.hosts.append("b")
    options.token = "other"
    assert options.hosts == ["a", "b"] and "s3cret" not in repr(options) and "other" not in repr(options)
    assert repr(Options()) == "Options(hosts=[], inner=None)"
    with pytest.raises(TypeError, match="unhashable"):
        hash(options)


def test_replace_and_asdict_match_dataclasses() -> None:
    options = Options(["a"], "t", Point(1, 2, {"k": "v"}))
    changed = replace(options, token="u")
    assert changed == Options(["a"], "u", Point(1, 2, {"k": "v"})) and options.token == "t"
    assert asdict(options) == {"hosts": ["a"], "token": "t", "inner": {"x": 1, "y": 2, "tags": {"k": "v"}}}
    assert asdict(Point(3)) == dataclasses.asdict(DataPoint(3))
    with pytest.raises(TypeError, match="unexpected keyword argument 'nope'"):
        replace(options, nope=1)
    with pytest.raises(TypeError, match="not a record"):
        asdict(DataPoint(1))


def test_records_pickle() -> None:
    for value in (Point(1, 2, {"a": "b"}), Options(["x"], "t", Point(3))):
        assert pickle.loads(pickle.dumps(value)) == value


def test_definitions_records_cannot_honour_are_refused() -> None:
    with pytest.raises(TypeError, match="without a default follows"):
        @record
        class Bad:
            a: int = 1
            b: int
    with pytest.raises(ValueError, match="mutable default list"):
        @record
        class Shared:
            a: List[int] = []
    with pytest.raises(TypeError, match="cannot inherit"):
        @record
        class Child(Point):
            z: int = 0
    with pytest.raises(TypeError, match="__post_init__"):
        @record
        class Checked:
            a: int

            def __post_init__(self) -> None:
                pass


def test_a_class_own_methods_are_kept() -> None:
    @record
    class Secret:
        value: str = ""

        def __repr__(self) -> str:
            return "Secret(hidden)"

    assert repr(Secret("x")) == "Secret(hidden)" and Secret("x") == Secret("x")


def test_the_pull_path_imports_neither_dataclasses_nor_inspect() -> None:
    # What the records are for: `wes-arvados pull` starts without compiling dataclass methods.
    code = ("import sys; from wes_arvados import cli; cli._import_pull_command(); "
            "print(sorted(m for m in ('dataclasses', 'inspect') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
