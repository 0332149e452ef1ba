"""An HTTP server of the tests' own, serving from a daemon thread on a loopback port."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional, Type, TypeVar

T = TypeVar("T", bound="ThreadedServer")


def redirected(handler: BaseHTTPRequestHandler) -> bool:
    """Answer ``/to/<url>`` with a 302 to `<url>` and say so; any other path is left to the caller."""
    if not handler.path.startswith("/to/"):
        return False
    handler.send_response(302)
    handler.send_header("Location", handler.path[len("/to/"):])
    handler.send_header("Content-Length", "0")
    handler.end_headers()
    return True


class ThreadedServer:
    """Owns a `ThreadingHTTPServer` on a loopback address (127.0.0.1 unless told); `start`/`stop`, or use it as a context manager."""

    thread_name = "test-server"

    def __init__(self, handler: Type[BaseHTTPRequestHandler], port: int = 0, address: str = "127.0.0.1") -> None:
        self._httpd = ThreadingHTTPServer((address, port), handler)
        self._httpd.daemon_threads = True
        self._thread: Optional[threading.Thread] = None

    @property
    def port(self) -> int:
        """The port it listens on."""
        return self._httpd.server_address[1]

    def start(self: T) -> T:
        """Serve in a daemon thread."""
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), name=self.thread_name,
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(10)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self: T) -> T:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
