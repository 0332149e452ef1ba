"""List parameters as the API server applies them: filters, where, order, limit, offset, select, count.

Mirrors services/api/lib/record_filters.rb and load_param.rb on records held as dicts. Column
types come from the discovery document's schemas ("string", "datetime", "jsonb", ...).
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any, Callable, Dict, List, Optional, Sequence

from .errors import Invalid
from .records import MODELS, parse_time, type_infix

Columns = Dict[str, str]
Record = Dict[str, Any]
Predicate = Callable[[Record], bool]
# How a filter reaches a joined table: ("container", "state") -> the value of the CR's container's state.
Joiner = Callable[[Record, str, str], Any]

DEFAULT_LIMIT = 100
_TEXT_ONLY = re.compile(r"[<=>]")
_JSON_RANK = {dict: 5, list: 4, bool: 3, int: 2, float: 2, str: 1, type(None): 0}


def _invalid(message: str) -> Invalid:
    return Invalid(f"#<ArgumentError: {message}>")


def like_regex(pattern: str, ignore_case: bool) -> "re.Pattern[str]":
    """The regex equivalent of an SQL LIKE pattern (`%`, `_`, backslash escapes)."""
    out, escaped = [], False
    for char in pattern:
        if escaped:
            out.append(re.escape(char))
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "%":
            out.append(".*")
        elif char == "_":
            out.append(".")
        else:
            out.append(re.escape(char))
    return re.compile("".join(out) + r"\Z", re.S | (re.I if ignore_case else 0))


def jsonb_contains(outer: Any, inner: Any) -> bool:
    """PostgreSQL's `outer @> inner` for JSON values."""
    if isinstance(inner, dict):
        return isinstance(outer, dict) and all(k in outer and jsonb_contains(outer[k], v) for k, v in inner.items())
    if isinstance(inner, list):
        return isinstance(outer, list) and all(any(jsonb_contains(o, i) for o in outer) for i in inner)
    return _json_equal(outer, inner)


def _json_equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b and _JSON_RANK.get(type(a)) == _JSON_RANK.get(type(b))


def _jsonb_compare(a: Any, b: Any) -> int:
    ra, rb = _JSON_RANK.get(type(a), 6), _JSON_RANK.get(type(b), 6)
    if ra != rb:
        return (ra > rb) - (ra < rb)
    if isinstance(a, (dict, list)):
        a, b = json.dumps(a, sort_keys=True), json.dumps(b, sort_keys=True)
    return (a > b) - (a < b)


def _jsonb_text(value: Any) -> Optional[str]:
    """`->>`: a string as itself, null as NULL, anything else as its JSON text."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value)


def _compare(op: str, a: Any, b: Any) -> bool:
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


class Filters:
    """Compiles a `filters` array for one table into a predicate, refusing what the API server refuses."""

    def __init__(self, columns: Columns, table: str, join: Optional[Joiner] = None,
                 joined_columns: Optional[Dict[str, Columns]] = None) -> None:
        self.columns = columns
        self.table = table
        self.join = join
        self.joined_columns = joined_columns or {}

    def compile(self, filters: Any) -> Predicate:
        """A predicate true for records matching every filter."""
        if filters in (None, ""):
            return lambda record: True
        if not isinstance(filters, list):
            raise _invalid('Could not parse "filters" param as an array')
        if filters and not isinstance(filters[0], list) and len(filters) == 3 and isinstance(filters[1], str):
            filters = [filters]  # a single filter, as some clients send it
        predicates = [self._one(f) for f in filters]
        return lambda record: all(p(record) for p in predicates)

    def _one(self, filt: Any) -> Predicate:
        if not isinstance(filt, list) or len(filt) < 2:
            raise _invalid(f"Invalid element in filters array: {json.dumps(filt)} is not an array")
        attrs_in, operator = filt[0], filt[1]
        operand = filt[2] if len(filt) > 2 else None
        if not isinstance(operator, str):
            raise _invalid(f"Invalid operator '{operator}' ({type(operator).__name__}) in filter")
        operator = operator.lower()
        if operator == "@@":
            raise _invalid("Full text search operator is no longer supported")
        if attrs_in == "any":
            attrs = [c for c, t in self.columns.items() if t in ("string", "text")]
        else:
            attrs = attrs_in if isinstance(attrs_in, list) else [attrs_in]
        alternatives = [self._attr(str(a), operator, operand) for a in attrs]
        return lambda record: any(p(record) for p in alternatives)

    def _attr(self, attr: str, operator: str, operand: Any) -> Predicate:
        head, _, rest = attr.partition(".")
        columns, getter = self.columns, (lambda record, col: record.get(col))
        if rest and head in self.joined_columns and self.join is not None:
            join, table = self.join, head
            columns = self.joined_columns[head]
            getter = lambda record, col: join(record, table, col)  # noqa: E731
            head, _, rest = rest.partition(".")
        ctype = columns.get(head)
        if rest:
            if ctype != "jsonb":
                raise _invalid(f"Invalid attribute '{head}' for subproperty filter")
            key = rest[1:-1] if rest.startswith("<") and rest.endswith(">") else rest
            return self._subproperty(lambda r: getter(r, head), key, operator, operand)
        if operator == "exists":
            if ctype != "jsonb":
                raise _invalid(f"Invalid attribute '{head}' for operator '{operator}' in filter")
            return lambda r: isinstance(getter(r, head), (dict, list)) and operand in getter(r, head)
        # searchable_columns: text columns for every operator, others only for comparisons and (not) in
        comparison = bool(_TEXT_ONLY.search(operator)) or operator in ("in", "not in")
        scalar = ctype in ("datetime", "integer", "float", "boolean")
        searchable = ctype in ("string", "text") or (scalar and comparison)
        if not searchable and not (ctype == "jsonb" and operator in ("contains", "=", "<>", "!=")):
            raise _invalid(f"Invalid attribute '{head}' in filter")
        value = lambda r: getter(r, head)  # noqa: E731
        return self._column(value, ctype or "string", head, operator, operand)

    def _column(self, value: Callable[[Record], Any], ctype: str, attr: str, operator: str, operand: Any) -> Predicate:
        if operator in ("=", "<", "<=", ">", ">=", "!=", "<>", "like", "ilike"):
            op = "<>" if operator == "!=" else operator
            if ctype == "jsonb" and op in ("=", "<>"):
                want = json.loads(operand) if isinstance(operand, str) else operand
                return (lambda r: value(r) is not None and _json_equal(value(r), want)) if op == "=" else \
                    (lambda r: value(r) is not None and not _json_equal(value(r), want))
            if isinstance(operand, str):
                if ctype == "boolean":
                    if op not in ("=", "<>"):
                        raise _invalid(f"Invalid operator '{op}' for boolean attribute '{attr}'")
                    lowered = operand.lower()
                    if lowered in ("1", "t", "true", "y", "yes"):
                        operand = True
                    elif lowered in ("0", "f", "false", "n", "no"):
                        operand = False
                    else:
                        raise _invalid(f"Invalid operand '{operand}' for boolean attribute '{attr}'")
                    return self._scalar(value, op, operand)
                if op in ("like", "ilike"):
                    regex = like_regex(operand, op == "ilike")
                    return lambda r: isinstance(value(r), str) and bool(regex.match(value(r)))
                if ctype == "datetime" and re.search(r"[<=>]", op):
                    moment = parse_time(operand)
                    return self._scalar(lambda r: None if value(r) is None else parse_time(value(r)), op, moment,
                                        null_unequal=True)
                return self._scalar(value, op, operand, null_unequal=True)
            if operand is None and op == "=":
                return lambda r: value(r) is None
            if operand is None and op == "<>":
                return lambda r: value(r) is not None
            if ctype == "boolean" and op in ("=", "<>") and isinstance(operand, bool):
                return self._scalar(value, op, operand)
            if ctype in ("integer", "float") and not isinstance(operand, bool) and isinstance(operand, (int, float)) \
                    and op not in ("like", "ilike"):
                if ctype == "integer" and not isinstance(operand, int):
                    raise _invalid(f"Invalid operand '{operand}' for integer attribute '{attr}'")
                return self._scalar(value, op, operand)
            raise _invalid(f"Invalid operand type '{_ruby_class(operand)}' for '{operator}' operator in filters")
        if operator in ("in", "not in"):
            if not isinstance(operand, list):
                raise _invalid(f"Invalid operand type '{_ruby_class(operand)}' for '{operator}' operator in filters")
            if ctype == "integer" and not all(isinstance(e, int) and not isinstance(e, bool) for e in operand):
                bad = next(e for e in operand if not isinstance(e, int) or isinstance(e, bool))
                raise _invalid(f"Invalid element '{bad}' in array for integer attribute '{attr}'")
            if ctype == "datetime":
                moments = {parse_time(e) for e in operand if isinstance(e, str)}
                def norm(r: Record) -> Any:
                    return None if value(r) is None else parse_time(value(r))
            else:
                moments = set(json.dumps(e) for e in operand)

                def norm(r: Record) -> Any:
                    return json.dumps(value(r))
            if operator == "in":
                return lambda r: value(r) is not None and norm(r) in moments
            if None in operand:
                return lambda r: False  # SQL: x NOT IN (NULL, ...) is never true
            return lambda r: value(r) is None or norm(r) not in moments
        if operator == "is_a":
            kinds = operand if isinstance(operand, list) else [operand]
            infixes = {_kind_infix(k) for k in kinds}
            if attr == "uuid":
                mine = type_infix(_model_of_table(self.table))
                return lambda r: mine in infixes
            return lambda r: isinstance(value(r), str) and value(r)[6:11] in infixes
        if operator == "contains":
            if ctype != "jsonb":
                raise _invalid(f"Invalid attribute '{attr}' for '{operator}' operator")
            if operand == []:
                raise _invalid(f"Invalid operand '[]' for '{operator}' operator")
            wanted = operand if isinstance(operand, list) else [operand]
            if not all(isinstance(w, str) for w in wanted):
                raise _invalid(f"Invalid element {json.dumps(operand)} in operand for \"contains\" operator "
                               "(operand must be a string or array of strings)")
            return lambda r: isinstance(value(r), (dict, list)) and all(w in value(r) for w in wanted)
        raise _invalid(f"Invalid operator '{operator}'")

    @staticmethod
    def _scalar(value: Callable[[Record], Any], op: str, operand: Any, null_unequal: bool = False) -> Predicate:
        if op == "=":
            return lambda r: value(r) is not None and value(r) == operand
        if op == "<>":
            # The API server adds "OR attr IS NULL" for string operands only.
            return lambda r: (value(r) is None and null_unequal) or (value(r) is not None and value(r) != operand)

        def compare(r: Record) -> bool:
            v = value(r)
            try:
                return v is not None and _compare(op, v, operand)
            except TypeError:
                return False
        return compare

    @staticmethod
    def _subproperty(value: Callable[[Record], Any], key: str, operator: str, operand: Any) -> Predicate:
        def prop(r: Record) -> Any:
            v = value(r)
            return v.get(key) if isinstance(v, dict) else None

        def has(r: Record) -> bool:
            return isinstance(value(r), dict) and key in value(r)

        if operator in ("=", "!="):
            positive = lambda r: isinstance(value(r), dict) and jsonb_contains(value(r), {key: operand})  # noqa: E731
            return positive if operator == "=" else (lambda r: value(r) is not None and not positive(r))
        if operator == "in":
            if not isinstance(operand, list):
                raise _invalid(f"Invalid operand type '{_ruby_class(operand)}' for '{operator}' operator in filters")
            return lambda r: any(isinstance(value(r), dict) and jsonb_contains(value(r), {key: o}) for o in operand)
        if operator in ("<", "<=", ">", ">="):
            return lambda r: has(r) and _compare(operator, _jsonb_compare(prop(r), operand), 0)
        if operator in ("like", "ilike"):
            regex = like_regex(str(operand), operator == "ilike")
            return lambda r: _jsonb_text(prop(r)) is not None and bool(regex.match(_jsonb_text(prop(r)) or ""))
        if operator == "not in":
            if not isinstance(operand, list):
                raise _invalid(f"Invalid operand type '{_ruby_class(operand)}' for '{operator}' operator in filters")
            texts = {_jsonb_text(o) for o in operand}
            return lambda r: _jsonb_text(prop(r)) is None or _jsonb_text(prop(r)) not in texts
        if operator == "exists":
            if operand is True:
                return has
            if operand is False:
                return lambda r: not has(r)
            raise _invalid(f"Invalid operand '{operand}' for '{operator}' must be true or false")
        if operator == "contains":
            return lambda r: isinstance(value(r), dict) and (
                jsonb_contains(value(r), {key: operand}) or jsonb_contains(value(r), {key: [operand]}))
        raise _invalid(f"Invalid operator for subproperty search '{operator}'")


def _ruby_class(value: Any) -> str:
    return {str: "String", int: "Integer", float: "Float", bool: "TrueClass" if value else "FalseClass",
            list: "Array", dict: "Hash", type(None): "NilClass"}.get(type(value), type(value).__name__)


def _kind_infix(kind: Any) -> Optional[str]:
    for resource, model in MODELS.items():
        if kind == "arvados#" + model[0].lower() + model[1:]:
            return type_infix(model)
    return None


def _model_of_table(table: str) -> str:
    return MODELS[table]


def where_to_filters(where: Any) -> List[list]:
    """The `where` parameter ({attr: value or [values]}) as filters."""
    if where in (None, ""):
        return []
    if isinstance(where, str):
        try:
            where = json.loads(where)
        except ValueError:
            where = None
    if not isinstance(where, dict):
        raise _invalid('Could not parse "where" param as an object')
    return [[k, "in", v] if isinstance(v, list) else [k, "=", v] for k, v in where.items()]


def limit_offset(params: Dict[str, Any], max_items: int) -> "tuple[int, int]":
    """`limit` (default 100, at most MaxItemsPerResponse) and `offset` (default 0)."""
    out = []
    for name, default in (("limit", DEFAULT_LIMIT), ("offset", 0)):
        raw = params.get(name)
        if raw is None:
            out.append(default)
            continue
        if not re.fullmatch(r"\d+", str(raw)):
            raise _invalid(f"Invalid value for {name} parameter")
        out.append(int(raw))
    return min(out[0], max_items), out[1]


def orders(order: Any, columns: Columns, table: str, select: Optional[Sequence[str]]) -> List[tuple]:
    """(column, descending) pairs: the valid requested orders, then `modified_at desc, uuid desc`, up to uuid."""
    if isinstance(order, str):
        order = json.loads(order) if order.startswith("[") else order.split(",")
    given: List[tuple] = []
    for item in order if isinstance(order, list) else []:
        parts = str(item).strip().split()
        if not parts:
            continue
        attr, direction = parts[0], (parts[1] if len(parts) > 1 else "asc").lower()
        if attr.startswith(table + "."):
            attr = attr[len(table) + 1:]
        if re.fullmatch(r"[a-z][_a-z0-9]+", attr) and attr in columns and direction in ("asc", "desc"):
            given.append((attr, direction == "desc"))
    out, used = [], set()
    for attr, desc in given + [("modified_at", True), ("uuid", True)]:
        if attr in used:
            continue
        used.add(attr)
        out.append((attr, desc))
        if attr == "uuid":
            break
    if select:
        out = [(a, d) for a, d in out if a in select]
    return out


def sort_records(records: List[Record], order: List[tuple]) -> List[Record]:
    """Records sorted as PostgreSQL would: NULLs last ascending, first descending."""
    def cmp(a: Record, b: Record) -> int:
        for attr, desc in order:
            x, y = a.get(attr), b.get(attr)
            if x is None or y is None:
                result = (x is None) - (y is None)  # NULL sorts after everything ascending
            elif isinstance(x, (dict, list)) or isinstance(y, (dict, list)):
                result = _jsonb_compare(x, y)
            else:
                result = (x > y) - (x < y)
            if result:
                return -result if desc else result
        return 0
    return sorted(records, key=functools.cmp_to_key(cmp))


def parse_json_param(value: Any, name: str, kind: type) -> Any:
    """A list/object parameter that may arrive as JSON text (query string) or already decoded (body)."""
    if isinstance(value, str):
        if value == "":
            return None
        try:
            value = json.loads(value)
        except ValueError:
            raise _invalid(f'Could not parse "{name}" param as {"an array" if kind is list else "an object"}')
    if value is not None and not isinstance(value, kind):
        raise _invalid(f'Could not parse "{name}" param as {"an array" if kind is list else "an object"}')
    return value


__all__ = ["Filters", "jsonb_contains", "like_regex", "limit_offset", "orders",
           "parse_json_param", "sort_records", "where_to_filters"]
