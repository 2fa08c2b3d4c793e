"""A server in a child process: `start_process` returns once its ``/health`` answers; `stop_process`
stops it as ``Ctrl-C`` would (SIGTERM: requests in flight are answered first).

The benchmarks and the examples run ``sr3 serve`` and ``python -m sr3_env.openenv`` this way, as a
user runs them in another terminal.
"""

from __future__ import annotations

import subprocess
import tempfile
import time

from sr3_env.errors import require


def start_process(command: list[str], port: int, what: str, timeout: float = 300.0) -> subprocess.Popen:
    """Run ``command`` (a server listening on ``port`` of 127.0.0.1); return once its /health answers.

    Raises RuntimeError with the server's output if it exits or does not answer within ``timeout`` s."""
    require("serve", "start_process", "httpx")
    import httpx

    log = tempfile.TemporaryFile()
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).raise_for_status()
            return process
        except httpx.TransportError:
            if process.poll() is not None or time.monotonic() > deadline:
                stop_process(process)
                log.seek(0)
                raise RuntimeError(f"{what} did not start:\n" + log.read().decode(errors="replace")) from None
            time.sleep(0.5)


def stop_process(process: subprocess.Popen, timeout: float = 120.0) -> int:
    """SIGTERM, then wait (SIGKILL after ``timeout`` s); the exit status."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return int(process.returncode)
