"""TensorBoard started on localhost for a logdir, for the screenshots script, the browser test and the
tab's benchmark: a free port, wait until it answers, stop it afterwards."""

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

START_SECONDS = 120  # a slow machine imports torch and TensorBoard's plugins in about 20 s


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def running_tensorboard(logdir: Path, port: int | None = None, log: Path | None = None) -> Iterator[str]:
    """TensorBoard serving ``logdir`` on 127.0.0.1 (``port``, or a free one) while the block runs; yields
    its base URL. Its output goes to ``log`` (default: discarded)."""
    port = port or free_port()
    output = open(log, "w") if log else subprocess.DEVNULL  # noqa: SIM115 -- closed below
    server = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", "127.0.0.1",
         "--port", str(port), "--reload_interval", "0"],
        stdout=output, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_serving(f"{base}/data/plugins_listing", server)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)
        if log:
            output.close()


def _wait_until_serving(url: str, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"TensorBoard exited with status {server.returncode} before it served {url}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"TensorBoard did not answer at {url} within {START_SECONDS} s")
