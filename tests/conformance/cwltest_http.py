"""cwltest, with output checks that can read output locations given as http(s) URLs.

Run with the peers' Python (.venv-peers), which has cwltest: ``python cwltest_http.py
[cwltest arguments]``.  It is cwltest itself, except that the file system access
cwltest uses to check outputs (existence, size, checksum) also reads http(s)
URLs with GET, as a WES client would: the WES server returns the locations of a
run's output files as URLs below its own base URL, and cwltest only knows local
paths.  Local paths and file:// URIs (plain cwltool's outputs) are read as before.

A location counts as existing when a GET of it answers 2xx; a 404 (or any other
error status) means it does not exist, so the check fails just as it would for
a missing local file.
"""

from __future__ import annotations

import io
import sys
import threading
from typing import IO, Any, Dict, Optional
from urllib.parse import urlsplit

import cwltest.compare
import cwltest.main
import requests
from cwltest.stdfsaccess import StdFsAccess


def _is_http(location: str) -> bool:
    return urlsplit(location).scheme in ("http", "https")


class HttpFsAccess(StdFsAccess):
    """cwltest's StdFsAccess that also reads http(s) URLs (each fetched once)."""

    def __init__(self, basedir: str) -> None:
        super().__init__(basedir)
        self._lock = threading.Lock()
        self._cache: Dict[str, Optional[bytes]] = {}
        self._http = threading.local()

    def _session(self) -> requests.Session:
        session = getattr(self._http, "session", None)
        if session is None:
            session = self._http.session = requests.Session()
        return session

    def _get(self, url: str) -> Optional[bytes]:
        """The body at `url`, or None when it does not answer 2xx."""
        with self._lock:
            if url in self._cache:
                return self._cache[url]
        try:
            response = self._session().get(url, timeout=120)
        except requests.RequestException as exc:
            print(f"cwltest_http: GET {url} failed: {exc}", file=sys.stderr)
            body = None
        else:
            body = response.content if 200 <= response.status_code < 300 else None
            if body is None:
                print(f"cwltest_http: GET {url} answered {response.status_code}", file=sys.stderr)
        with self._lock:
            self._cache[url] = body
        return body

    def _body(self, url: str) -> bytes:
        body = self._get(url)
        if body is None:
            raise FileNotFoundError(url)
        return body

    def open(self, fn: str, mode: str) -> IO[Any]:
        if not _is_http(fn):
            return super().open(fn, mode)
        body = self._body(fn)
        return io.BytesIO(body) if "b" in mode else io.StringIO(body.decode("utf-8"))

    def size(self, fn: str) -> int:
        if not _is_http(fn):
            return super().size(fn)
        return len(self._body(fn))

    def isfile(self, fn: str) -> bool:
        if not _is_http(fn):
            return super().isfile(fn)
        return self._get(fn) is not None

    def isdir(self, fn: str) -> bool:
        if not _is_http(fn):
            return super().isdir(fn)
        # A WES server has no standard way to say "this URL is a directory";
        # the least a Directory location must do is resolve.
        return self._get(fn) is not None


def _compare_contents(expected: Dict[str, Any], actual: Dict[str, Any]) -> None:
    """cwltest's check of `contents`, reading through the file system access (http too)."""
    location = actual.get("path") or actual["location"]
    with cwltest.compare.fs_access.open(location, "rb") as fh:
        actual_contents = fh.read().decode("utf-8")
    if expected["contents"] != actual_contents:
        raise cwltest.compare.CompareFail.format(
            expected, actual,
            f"Output file contents do not match: actual {actual_contents!r} is not equal to expected "
            f"{expected['contents']!r}",
        )


def main() -> int:
    """cwltest's main with the http-capable file system access."""
    cwltest.compare.fs_access = HttpFsAccess("")
    cwltest.compare._compare_contents = _compare_contents
    # cwltest would replace fs_access with an installed plugin's; we want ours.
    cwltest.main.load_optional_fsaccess_plugin = lambda: None
    return cwltest.main.main()


if __name__ == "__main__":
    sys.exit(main())
