"""Keep manifests as the API server reads them: validation, portable data hash, signatures, files."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Callable, Dict, List, Tuple

EMPTY_BLOCK = "d41d8cd98f00b204e9800998ecf8427e"
LOCATOR_RE = re.compile(r"^([0-9a-fA-F]{32})(\+([0-9]+))?((\+([A-Z][A-Za-z0-9@_-]*))+)?$")
_STREAM_TOKEN_RE = re.compile(r"^([^\000-\040\\]|\\[0-3][0-7][0-7])+$")
_STREAM_NAME_RE = re.compile(r"^(\.)(/[^/]+)*$")
_EMPTY_DIR_TOKEN_RE = re.compile(r"^0:0:\.$")
_FILE_TOKEN_RE = re.compile(r"^[0-9]+:[0-9]+:([^\000-\040\\]|\\[0-3][0-7][0-7])+$")
_FILE_NAME_RE = re.compile(r"^[0-9]+:[0-9]+:([^/]+(/[^/]+)*)$", re.S)
_NON_8BIT_RE = re.compile(r"[^\\]\\[4-7][0-7][0-7]")
_ESCAPE_RE = re.compile(r"\\(\\|[0-7]{3})")


def unescape(text: str) -> str:
    """A stream or file name with its `\\NNN` and `\\\\` escapes decoded."""
    return _ESCAPE_RE.sub(lambda m: "\\" if m.group(1) == "\\" else chr(int(m.group(1), 8)), text)


def escape(name: str) -> str:
    """A stream or file name escaped for a manifest (space, tab, newline, backslash, colon-free)."""
    return "".join(f"\\{ord(c):03o}" if c in " \t\n\\" else c for c in name)


def _inspect(word: str) -> str:
    return json.dumps(word)  # as Ruby's String#inspect, near enough


def _full(line: int, message: str) -> str:
    return f"Manifest invalid for stream {line}: {message}"


def validate(manifest: str) -> None:
    """Raise ValueError with the API server's message (Keep::Manifest.validate!) if `manifest` is not valid."""
    if manifest == "":
        return
    if not manifest.endswith("\n"):
        raise ValueError("Invalid manifest: does not end with newline")
    for number, line in enumerate(manifest[:-1].split("\n"), 1):
        words = line.split(" ")
        while words and words[-1] == "":  # as Ruby's split, which drops trailing empty fields
            words.pop()
        if not words:
            raise ValueError(_full(number, "missing stream name"))
        word = words.pop(0)
        if _NON_8BIT_RE.search(word):
            raise ValueError(_full(number, f">8-bit encoded chars not allowed on stream token {_inspect(word)}"))
        name = unescape(word)
        if not (_STREAM_TOKEN_RE.match(word) and _STREAM_NAME_RE.match(name) and not re.search(r"/\.\.?(/|$)", name)):
            raise ValueError(_full(number, f"missing or invalid stream name {_inspect(word)}"))
        word = words.pop(0) if words else None
        count = 0
        while word is not None and LOCATOR_RE.match(word):
            word = words.pop(0) if words else None
            count += 1
        if count == 0:
            raise ValueError(_full(number, "missing or invalid locator" + (f" {_inspect(word)}" if word else "")))
        count = 0
        while word is not None and (_EMPTY_DIR_TOKEN_RE.match(unescape(word)) or _valid_file_token(word)):
            word = words.pop(0) if words else None
            count += 1
        if word is not None:
            raise ValueError(_full(number, f"invalid file token {_inspect(word)}"))
        if count == 0:
            raise ValueError(_full(number, "no file tokens"))
        if line.endswith(" "):
            raise ValueError(_full(number, "trailing space"))


def _valid_file_token(word: str) -> bool:
    if not _FILE_TOKEN_RE.match(word):
        return False
    match = _FILE_NAME_RE.match(unescape(word))
    return bool(match) and not ({".", ".."} & set(match.group(1).split("/")))


def map_locators(manifest: str, change: Callable[[str], str]) -> str:
    """The manifest with every block locator replaced by `change(locator)` (munge_manifest_locators)."""
    if manifest == "":
        return ""
    lines = []
    for line in manifest.rstrip("\n").split("\n"):
        words = line.rstrip().split(" ")
        lines.append(" ".join([words[0]] + [change(w) if LOCATOR_RE.match(w) else w for w in words[1:]]))
    return "\n".join(lines) + "\n"


def locators(manifest: str) -> List[str]:
    """Every block locator in the manifest, in order."""
    found: List[str] = []
    map_locators(manifest, lambda loc: found.append(loc) or loc)
    return found


def portable(manifest: str) -> str:
    """The manifest with every hint but the size removed from each locator."""
    def keep_size(loc: str) -> str:
        match = LOCATOR_RE.match(loc)
        assert match
        return match.group(1) + (match.group(2) or "")
    return map_locators(manifest, keep_size)


def portable_data_hash(manifest: str) -> str:
    """md5 of the portable manifest, "+", its length in bytes."""
    text = portable(manifest).encode()
    return f"{hashlib.md5(text).hexdigest()}+{len(text)}"


def files(manifest: str) -> List[Tuple[str, str, int]]:
    """(stream, file name, size) of each file, sizes of repeated segments summed (Keep::Manifest#files)."""
    sizes: Dict[Tuple[str, str], int] = {}
    for line in manifest.splitlines():
        words = line.split()
        if not words:
            continue
        stream, in_files = unescape(words[0]), False
        for word in words[1:]:
            if not in_files and LOCATOR_RE.match(word):
                continue
            in_files = True
            _, size, name = word.split(":", 2)
            name = unescape(name)
            where = stream
            if "/" in name:
                directory, _, name = name.rpartition("/")
                where = f"{stream}/{directory}"
            sizes[(where, name)] = sizes.get((where, name), 0) + int(size)
    return [(stream, name, size) for (stream, name), size in sizes.items()]


def file_count(manifest: str) -> int:
    """The number of files, empty-directory placeholders not counted."""
    return sum(1 for _, name, size in files(manifest) if not (name == "." and size == 0))


def file_size_total(manifest: str) -> int:
    """The total size of all files."""
    return sum(size for _, _, size in files(manifest))


def block_sizes(manifest: str) -> Dict[str, int]:
    """md5 -> size of each distinct block the manifest refers to."""
    out: Dict[str, int] = {}
    for loc in locators(manifest):
        match = LOCATOR_RE.match(loc)
        assert match
        out[match.group(1)] = int(match.group(3) or 0)
    return out


def under_directory(manifest: str, directory: str) -> str:
    """The manifest's streams moved under `directory` (a plain name): `.` -> `./directory`."""
    out = []
    for line in manifest.splitlines():
        if not line:
            continue
        stream, _, rest = line.partition(" ")
        out.append(f"./{escape(directory)}{stream[1:]} {rest}")
    return "\n".join(out) + "\n" if out else ""


def merge(*manifests: str) -> str:
    """The streams of several manifests, in stream-name order (later streams of one name follow earlier ones)."""
    lines = [line for text in manifests for line in text.splitlines() if line]
    lines.sort(key=lambda line: unescape(line.split(" ", 1)[0]))
    return "\n".join(lines) + "\n" if lines else ""
