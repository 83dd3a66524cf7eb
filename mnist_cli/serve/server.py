"""Binding the socket and running uvicorn for `mnist serve`.

The socket is bound here, before uvicorn starts, so that a port already in use is one
`Error:` line (uvicorn would log it and exit on its own), and so that `--port 0` (any free
port) can print the port it got. uvicorn handles Ctrl-C itself: it finishes the requests in
flight, shuts down, and raises the Ctrl-C again, which ends `serve` normally.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable

from mnist_cli.errors import UsageError
from mnist_cli.serve.app import create_app
from mnist_cli.serve.registry import RunRegistry
from mnist_cli.serve.training import PageTraining

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
"""The names a browser on this machine reaches a loopback server by (Host header forms)."""


def is_loopback(host: str) -> bool:
    """Whether `host` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on `host`:`port`, or a `UsageError` saying why not."""
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                       flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise UsageError(f"--host {host}: not an address of this machine ({error.strerror})"
                         ) from None
    family, kind, protocol, _name, address = addresses[0]
    listener = socket.socket(family, kind, protocol)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(address)
    except OSError as error:
        listener.close()
        reason = error.strerror or str(error)
        hint = " (another server uses it: choose another with --port)" if port else ""
        raise UsageError(f"cannot listen on {host}:{port}: {reason}{hint}") from None
    listener.listen(128)
    listener.set_inheritable(True)
    return listener


def page_address(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def serve(registry: RunRegistry, listener: socket.socket,
          announce: Callable[[str], None], training: PageTraining | None = None) -> None:
    """Serve `registry` on the bound `listener` until Ctrl-C; `announce` prints the address.
    `training`: the page may start trainings."""
    import uvicorn

    host, port = listener.getsockname()[:2]
    bound_name = f"[{host}]" if ":" in host else host
    allowed_hosts = [*LOOPBACK_NAMES, bound_name] if is_loopback(host) else None
    server: uvicorn.Server | None = None
    app = create_app(registry, allowed_hosts, training,
                     stopping=lambda: server is not None and server.should_exit)
    # A live stream ends within LIVE_POLL_SECONDS of a Ctrl-C; the timeout is a backstop.
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                            timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    announce(page_address(host, port))
    try:
        server.run(sockets=[listener])
    except KeyboardInterrupt:
        # uvicorn has shut down cleanly, then passes the Ctrl-C on: stopping is what the
        # user asked for, not a failure.
        pass
    finally:
        listener.close()
