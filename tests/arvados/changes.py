"""Rails-style change checks shared by container requests and containers (whitelist_update.rb)."""

from __future__ import annotations

import json
from typing import Any, Dict, Iterable, List, Optional

Record = Dict[str, Any]


def really_changed(old: Optional[Record], new: Record, attr: str) -> bool:
    """Changed, counting nil, [] and {} as the same."""
    before, after = (old or {}).get(attr), new.get(attr)
    if before in (None, [], {}) and after in (None, [], {}):
        return False
    return before != after


def inspect(value: Any) -> str:
    """A value shown the way Ruby's `inspect` roughly would."""
    return "nil" if value is None else json.dumps(value)


def whitelist_errors(old: Record, new: Record, permitted: Iterable[str], attrs: Iterable[str]) -> List[str]:
    """"<Attr> cannot be modified in state ..." for each attribute changed but not permitted."""
    allowed = set(permitted)
    return [f"{a.replace('_', ' ').capitalize()} cannot be modified in state '{new.get('state')}' "
            f"({inspect(old.get(a))}, {inspect(new.get(a))})"
            for a in attrs if a not in allowed and really_changed(old, new, a)]


def state_change_error(transitions: Dict[Optional[str], List[str]], old: Optional[Record], new: Record) -> List[str]:
    """validate_state_change: the one error for a transition the model does not allow."""
    before = (old or {}).get("state")
    if before == new.get("state") and old is not None:
        return []
    if new.get("state") in transitions.get(before, []):
        return []
    return [f"State cannot change from {before or ''} to {new.get('state')}"]
