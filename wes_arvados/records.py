"""Records: the part of `dataclasses` the pull path uses, made when a class is defined without compiling code.

`wes-arvados pull` starts a new interpreter for every image, so its imports are
part of every pull. On Python 3.11, ``@dataclass`` compiles each generated method
with ``exec`` (~0.6 ms a class) and importing ``dataclasses`` brings ``inspect``
and ``ast``: for the 31 value classes of the pull path, 30–40 ms of a start-up of
~150 ms (benchmarks/README.rst). `record` builds the same methods from closures
instead, once per class.

It supports what those classes use, with dataclasses' meaning: fields from the
class's own annotations, in order; defaults, ``field(default_factory=…)``,
``field(repr=False)``, ``field(hash=False)``; ``frozen=True``; generated
``__init__``, ``__repr__``, ``__eq__`` and ``__hash__`` (hashable only when
frozen) unless the class defines its own; `replace` and `asdict`. Not supported:
inheriting fields from another record, ``ClassVar``, ``InitVar``,
``__post_init__``, ordering, slots (each raises or is left out, never guessed).
Type checkers read `record` as a dataclass (``typing.dataclass_transform``).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Tuple, TypeVar, overload

T = TypeVar("T")

try:
    from typing import dataclass_transform
except ImportError:  # Python < 3.11: only type checkers need it, and they know typing_extensions'
    def dataclass_transform(**_: Any) -> Callable[[T], T]:  # type: ignore[no-redef]
        return lambda decorated: decorated

_MISSING: Any = object()
_FIELDS = "__record_fields__"


class FrozenRecordError(AttributeError):
    """An attempt to assign to (or delete) a field of a frozen record."""


class Field:
    """How one field of a record behaves; what `field` returns."""

    __slots__ = ("name", "default", "default_factory", "repr", "hash")

    def __init__(self, default: Any = _MISSING, default_factory: Any = _MISSING, repr: bool = True,
                 hash: bool = True) -> None:
        if default is not _MISSING and default_factory is not _MISSING:
            raise ValueError("cannot give both default and default_factory")
        self.name = ""
        self.default = default
        self.default_factory = default_factory
        self.repr = repr
        self.hash = hash


def field(*, default: Any = _MISSING, default_factory: Any = _MISSING, repr: bool = True, hash: bool = True) -> Any:
    """A field with a `default` or a `default_factory`, left out of ``repr`` or of the hash: as `dataclasses.field`."""
    return Field(default, default_factory, repr, hash)


@overload
def record(cls: type[T], /) -> type[T]: ...


@overload
def record(*, frozen: bool = False) -> Callable[[type[T]], type[T]]: ...


@dataclass_transform(field_specifiers=(field, Field))
def record(cls: Optional[type] = None, /, *, frozen: bool = False) -> Any:
    """Make `cls` a record: ``@record`` or ``@record(frozen=True)``, used as ``@dataclass`` is."""
    def wrap(cls: type) -> type:
        return _make(cls, frozen)
    return wrap if cls is None else wrap(cls)


def _collect(cls: type) -> Tuple[Field, ...]:
    for base in cls.__mro__[1:]:
        if _FIELDS in base.__dict__:
            raise TypeError(f"{cls.__name__}: a record cannot inherit the fields of {base.__name__}")
    fields = []
    seen_default = False
    for name, annotation in cls.__dict__.get("__annotations__", {}).items():
        if isinstance(annotation, str) and annotation.split("[", 1)[0] in ("ClassVar", "typing.ClassVar",
                                                                          "InitVar", "dataclasses.InitVar"):
            raise TypeError(f"{cls.__name__}.{name}: ClassVar and InitVar are not supported by records")
        value = cls.__dict__.get(name, _MISSING)
        spec = value if isinstance(value, Field) else Field(default=value)
        spec.name = name
        if isinstance(spec.default, (list, dict, set)):
            raise ValueError(f"{cls.__name__}.{name}: mutable default {type(spec.default).__name__}; "
                             "use field(default_factory=...)")
        has_default = spec.default is not _MISSING or spec.default_factory is not _MISSING
        if seen_default and not has_default:
            raise TypeError(f"{cls.__name__}: field {name!r} without a default follows one with a default")
        seen_default = seen_default or has_default
        if spec.default is _MISSING:
            if name in cls.__dict__:
                delattr(cls, name)
        else:
            setattr(cls, name, spec.default)
        fields.append(spec)
    return tuple(fields)


def _make(cls: type, frozen: bool) -> type:
    if "__post_init__" in cls.__dict__:
        raise TypeError(f"{cls.__name__}: __post_init__ is not supported by records")
    fields = _collect(cls)
    names = tuple(f.name for f in fields)
    by_name: Dict[str, Field] = {f.name: f for f in fields}
    setter = object.__setattr__
    title = cls.__qualname__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if len(args) > len(names):
            raise TypeError(f"{title}() takes {len(names)} positional arguments but {len(args)} were given")
        for name, value in zip(names, args):
            if name in kwargs:
                raise TypeError(f"{title}() got multiple values for argument {name!r}")
            setter(self, name, value)
        for name, value in kwargs.items():
            if name not in by_name:
                raise TypeError(f"{title}() got an unexpected keyword argument {name!r}")
            setter(self, name, value)
        for spec in fields[len(args):]:
            if spec.name in kwargs:
                continue
            if spec.default is not _MISSING:
                setter(self, spec.name, spec.default)
            elif spec.default_factory is not _MISSING:
                setter(self, spec.name, spec.default_factory())
            else:
                raise TypeError(f"{title}() missing required argument: {spec.name!r}")

    shown = tuple(f.name for f in fields if f.repr)

    def __repr__(self: Any) -> str:
        return f"{type(self).__qualname__}({', '.join(f'{n}={getattr(self, n)!r}' for n in shown)})"

    def __eq__(self: Any, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in names)

    hashed = tuple(f.name for f in fields if f.hash)

    def __hash__(self: Any) -> int:
        return hash(tuple(getattr(self, n) for n in hashed))

    def __setattr__(self: Any, name: str, value: Any) -> None:
        raise FrozenRecordError(f"cannot assign to field {name!r} of a frozen {title}")

    def __delattr__(self: Any, name: str) -> None:
        raise FrozenRecordError(f"cannot delete field {name!r} of a frozen {title}")

    own = cls.__dict__
    methods: Dict[str, Any] = {"__init__": __init__}
    if "__repr__" not in own:
        methods["__repr__"] = __repr__
    if "__eq__" not in own:
        methods["__eq__"] = __eq__
        # As dataclasses: a frozen record hashes by its fields, a mutable one is not hashable.
        if own.get("__hash__") is None:
            methods["__hash__"] = __hash__ if frozen else None
    if frozen:
        methods["__setattr__"], methods["__delattr__"] = __setattr__, __delattr__
    for name, method in methods.items():
        if method is not None:
            method.__qualname__ = f"{title}.{name}"
        setattr(cls, name, method)
    setattr(cls, _FIELDS, fields)
    setattr(cls, "__match_args__", names)
    return cls


def fields_of(obj: Any) -> Tuple[Field, ...]:
    """The fields of a record (class or instance), in order."""
    try:
        return getattr(obj, _FIELDS)
    except AttributeError:
        raise TypeError(f"{obj!r} is not a record") from None


def replace(obj: T, **changes: Any) -> T:
    """A copy of the record `obj` with `changes`: as `dataclasses.replace`."""
    values = {f.name: getattr(obj, f.name) for f in fields_of(obj)}
    values.update(changes)
    return type(obj)(**values)


def asdict(obj: Any) -> Dict[str, Any]:
    """The record `obj` as a dict, records within it too (in lists, tuples and dicts): as `dataclasses.asdict`.

    Other values are not copied.
    """
    return {f.name: _plain(getattr(obj, f.name)) for f in fields_of(obj)}


def _plain(value: Any) -> Any:
    if hasattr(type(value), _FIELDS):
        return asdict(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
