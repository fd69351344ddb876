"""Listening and serving: a socket bound before anything else, then uvicorn on it.

Binding first turns "port in use" into one line for the user instead of a server log, and
leaves no window in which another process could take the port.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from foldervision.errors import FoldervisionError

ALL_INTERFACES = ("0.0.0.0", "::", "")
"""Hosts that make the page reachable from other machines (it has no login)."""


def listens_everywhere(host: str) -> bool:
    return host.strip("[]") in ALL_INTERFACES


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port; a user mistake raises FoldervisionError (one line)."""
    if not 0 <= port <= 65535:
        raise FoldervisionError(f"--port must be between 0 and 65535, got {port}.")
    host = host.strip("[]")
    try:
        family = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.create_server((host, port), family=family, backlog=128)
    except (OSError, UnicodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise FoldervisionError(
            f"{host}:{port}: cannot listen there ({reason}); pass another --port or --host."
        ) from None
    # Accepted connections inherit this. Without it, uvicorn on a socket it did not bind itself
    # writes headers and body as two segments and Nagle + delayed ACK add 40 ms to every answer.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def run_server(app: object, sock: socket.socket) -> None:
    """Serve `app` on `sock` until Ctrl-C; uvicorn logs only warnings and errors."""
    import uvicorn

    config = uvicorn.Config(app, log_level="warning", access_log=False)  # type: ignore[arg-type]
    uvicorn.Server(config).run(sockets=[sock])


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


@contextmanager
def serving_in_thread(app: object, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve `app` from a background thread for the block (tests, benchmarks); yields its URL."""
    import uvicorn

    sock = listen(host, port)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))  # type: ignore[arg-type]
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError("the web server did not start")
        time.sleep(0.02)
    try:
        yield url_of(sock).rstrip("/")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
