"""Running a server: in the foreground until SIGINT/SIGTERM (`run_until_signal`, the commands), or
on a background thread (`ServerThread`) at a free loopback port (`free_port`) for tests, examples
and benchmarks, which talk to a real uvicorn server over loopback."""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from typing import Any

from sr3_env.errors import require

logger = logging.getLogger(__name__)


def run_until_signal(app: Any, host: str, port: int) -> None:
    """Run ``app`` with uvicorn until SIGINT/SIGTERM, then return normally (exit status 0).

    uvicorn stops gracefully on those signals (no new connections, requests in flight answered, the
    app's shutdown runs), then re-raises the signal to the handler it found: ours notes it, so the
    command ends normally instead of dying of the signal afterwards."""
    require("serve", "Running a server", "uvicorn")
    import uvicorn

    stops: list[int] = []
    in_main = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.signal(sig, lambda number, _: stops.append(number))
                for sig in (signal.SIGINT, signal.SIGTERM)} if in_main else {}
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=30)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if stops:
        logger.warning("stopped by %s after answering the requests in flight", signal.Signals(stops[-1]).name)


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (for tests and benchmarks on loopback)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class ServerThread:
    """Run an app with uvicorn on a background thread; a context manager that waits until the server
    answers and shuts it down gracefully on exit.

    ``url`` is the base address, e.g. ``http://127.0.0.1:PORT``.
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int | None = None, startup_timeout: float = 60.0) -> None:
        require("serve", "ServerThread", "uvicorn")
        import uvicorn

        self.host, self.port = host, port or free_port(host)
        self.url = f"http://{host}:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=self.port, log_level="warning",
                                                    timeout_graceful_shutdown=10))
        self.thread = threading.Thread(target=self.server.run, name="sr3-server", daemon=True)
        self.startup_timeout = startup_timeout

    def __enter__(self) -> "ServerThread":
        self.thread.start()
        deadline = time.monotonic() + self.startup_timeout
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError(f"The server on {self.url} stopped while starting (is the port taken?).")
            if time.monotonic() > deadline:
                raise TimeoutError(f"The server on {self.url} did not start within {self.startup_timeout:.0f} s.")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Ask uvicorn to exit (as on SIGTERM) and wait for the thread."""
        self.server.should_exit = True
        self.thread.join(timeout)

    def __exit__(self, *exc: Any) -> None:
        self.stop()
