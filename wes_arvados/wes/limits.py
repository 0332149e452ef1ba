"""What one RunWorkflow request may hold: sizes, counts and depths, each refused with a clear ErrorResponse.

The whole body is capped by ``max_upload_bytes`` before anything is read (413).
Within it: the number of attachments and each one's size (413), each JSON
field's size (413) and nesting depth (400), and the number and length of tags
(400). A refused request leaves nothing staged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..errors import BadRequest, TooLarge


@dataclass(frozen=True)
class Limits:
    """The limits of one request, from the Config."""

    attachments: int = 10_000
    attachment_bytes: int = 512 << 20
    json_bytes: int = 16 << 20
    json_depth: int = 64
    tags: int = 100
    tag_chars: int = 4096  # a key or a value

    def check_attachment_count(self, count: int) -> None:
        """`TooLarge` if a request sends more attachments than allowed."""
        if count > self.attachments:
            raise TooLarge(f"{count} workflow_attachment files; this server takes at most {self.attachments}")

    def check_attachment_size(self, name: str, size: int) -> None:
        """`TooLarge` once an attachment has gone over its size."""
        if size > self.attachment_bytes:
            raise TooLarge(f"workflow_attachment {name!r} is larger than this server's limit of "
                           f"{self.attachment_bytes} bytes per file")

    def load_json(self, name: str, raw: str) -> Any:
        """A JSON form field parsed, within the size and depth limits."""
        if len(raw.encode("utf-8", errors="replace")) > self.json_bytes:
            raise TooLarge(f"{name} is larger than this server's limit of {self.json_bytes} bytes")
        try:
            value = json.loads(raw)
        except RecursionError:
            raise BadRequest(f"{name} is nested deeper than this server's limit of {self.json_depth}") from None
        except ValueError as exc:
            raise BadRequest(f"{name} is not valid JSON: {exc}") from exc
        if _depth(value, self.json_depth + 1) > self.json_depth:
            raise BadRequest(f"{name} is nested deeper than this server's limit of {self.json_depth}")
        return value

    def check_tags(self, tags: dict) -> None:
        """`BadRequest` for too many tags, or a key or value that is too long."""
        if len(tags) > self.tags:
            raise BadRequest(f"{len(tags)} tags; this server takes at most {self.tags}")
        for key, value in tags.items():
            if len(key) > self.tag_chars or len(value) > self.tag_chars:
                raise BadRequest(f"tag {key[:40]!r}: keys and values may have at most {self.tag_chars} characters")


def _depth(value: Any, stop: int) -> int:
    """How deeply `value` nests lists and objects (1 for a scalar), counting no further than `stop`."""
    deepest, level = 1, [value]
    depth = 1
    while level and depth < stop:
        children = [c for v in level if isinstance(v, (dict, list))
                    for c in (v.values() if isinstance(v, dict) else v)]
        if not children:
            break
        depth += 1
        deepest, level = depth, children
    return deepest
