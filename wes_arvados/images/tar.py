"""Tar headers (POSIX.1-2001 pax over ustar) exactly as the standard library's tarfile writes them.

An archive's headers are the bytes of ``tarfile.TarInfo.tobuf(PAX_FORMAT)`` for
a member with mtime 0 and owner 0:0: a ustar header, preceded by a pax extended
header (name ``././@PaxHeader``) only for what ustar cannot hold: a path or link
over 100 bytes or not ASCII, a size of 8 GiB or more. They are built here
because importing tarfile (with shutil, bz2, lzma, pwd, grp) cost every pull
~10 ms; tests/images/test_archive.py checks them against tarfile byte for byte.
"""

from __future__ import annotations

from typing import Dict

BLOCK = 512
REGTYPE, SYMTYPE, DIRTYPE, XHDTYPE = b"0", b"2", b"5", b"x"
FILE_MODE = 0o644
DIR_MODE = 0o755
LINK_MODE = 0o777
# ustar's name and linkname fields; its size field holds 11 octal digits.
NAME_LENGTH = 100
SIZE_LIMIT = 8 ** 11
POSIX_MAGIC = b"ustar\x0000"
PAX_NAME = "././@PaxHeader"


def tar_header(name: str, size: int = 0, kind: bytes = REGTYPE, linkname: str = "") -> bytes:
    """A deterministic tar header: mtime 0, owner 0:0, pax records only where ustar falls short."""
    if kind == DIRTYPE and not name.endswith("/"):
        name += "/"
    mode = {DIRTYPE: DIR_MODE, SYMTYPE: LINK_MODE}.get(kind, FILE_MODE)
    pax: Dict[str, str] = {}
    for keyword, value in (("path", name), ("linkpath", linkname)):
        if not value.isascii() or len(value) > NAME_LENGTH:
            pax[keyword] = value
    if not 0 <= size < SIZE_LIMIT:
        pax["size"] = str(size)
        size = 0
    header = _ustar(name, mode, size, kind, linkname)
    if not pax:
        return header
    records = _pax_records(pax)
    return _ustar(PAX_NAME, 0, len(records), XHDTYPE, "") + records + padding(len(records)) + header


def padding(size: int) -> bytes:
    """Zero bytes that fill a member of `size` bytes up to a whole tar block."""
    return bytes(-size % BLOCK)


def _field(value: str, length: int) -> bytes:
    data = value.encode("ascii", "replace")[:length]
    return data + bytes(length - len(data))


def _octal(value: int, length: int) -> bytes:
    return b"%0*o\0" % (length - 1, value)


def _ustar(name: str, mode: int, size: int, kind: bytes, linkname: str) -> bytes:
    block = b"".join([
        _field(name, NAME_LENGTH), _octal(mode, 8), _octal(0, 8), _octal(0, 8),  # uid, gid
        _octal(size, 12), _octal(0, 12),  # mtime
        b" " * 8,  # the checksum, counted as spaces
        kind, _field(linkname, NAME_LENGTH), POSIX_MAGIC,
        bytes(32 + 32 + 8 + 8 + 155),  # uname, gname, devmajor, devminor, prefix
    ]).ljust(BLOCK, b"\0")
    checksum = b"%06o\0" % sum(block)
    return block[:148] + checksum + block[155:]


def _pax_records(pax: Dict[str, str]) -> bytes:
    """The records of a pax extended header: "<length> <keyword>=<value>\\n", the length counting itself."""
    binary = False
    try:
        for value in pax.values():
            value.encode("utf-8", "strict")
    except UnicodeEncodeError:  # names from undecodable bytes: tarfile marks them and writes them raw
        binary = True
    records = [b"21 hdrcharset=BINARY\n"] if binary else []
    for keyword, value in pax.items():
        body = b" %s=%s\n" % (keyword.encode(), value.encode("utf-8", "surrogateescape" if binary else "strict"))
        length = len(body)
        while len(str(length)) + len(body) != length:
            length = len(str(length)) + len(body)
        records.append(b"%d%s" % (length, body))
    return b"".join(records)
