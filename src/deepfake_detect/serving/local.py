"""The service on a free port of 127.0.0.1 in a background thread: for tests, the load test
and notebooks that want a real server without a second process."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import uvicorn


@contextlib.contextmanager
def serve_in_thread(app, timeout: float = 60.0) -> Iterator[str]:
    """Serve `app` with uvicorn on a free port of 127.0.0.1 in a thread, until the model is
    loaded; yields the base URL, and stops the server afterwards."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, thread.is_alive, timeout)
        yield base
    finally:
        server.should_exit = True
        thread.join(10)


def wait_ready(base: str, alive, timeout: float = 60.0) -> None:
    """Return once the server at `base` says its model is loaded (`/readyz`); raise when
    `alive()` turns false (its thread or process ended) or `timeout` seconds pass first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or not alive():
            raise RuntimeError(f"the server on {base} did not become ready")
        time.sleep(0.05)
