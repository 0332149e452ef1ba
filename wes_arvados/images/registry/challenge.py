"""Parsing WWW-Authenticate challenges (RFC 7235) as registries send them."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional

_PARAM = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?')


@dataclass
class Challenge:
    """One authentication scheme and its parameters (realm, service, scope…)."""

    scheme: str
    params: Dict[str, str] = field(default_factory=dict)


def parse_challenges(header: Optional[str]) -> List[Challenge]:
    """All challenges in a WWW-Authenticate header value, in order."""
    challenges: List[Challenge] = []
    text = (header or "").strip()
    while text:
        match = re.match(r"([A-Za-z][A-Za-z0-9_-]*)\s*", text)
        if not match:
            break
        challenge = Challenge(match.group(1).lower())
        text = text[match.end():]
        while True:
            param = _PARAM.match(text)
            # A bare word followed by '=' is a parameter; otherwise a new scheme starts.
            if not param:
                break
            value = param.group(2) if param.group(2) is not None else param.group(3)
            challenge.params[param.group(1).lower()] = re.sub(r"\\(.)", r"\1", value)
            text = text[param.end():]
        challenges.append(challenge)
        text = text.lstrip(", ")
    return challenges


def find(challenges: List[Challenge], scheme: str) -> Optional[Challenge]:
    """The first challenge of a scheme ("bearer", "basic"), if any."""
    return next((c for c in challenges if c.scheme == scheme), None)
