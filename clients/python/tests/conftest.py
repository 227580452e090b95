"""Fixtures: the real profile-image server binary on 127.0.0.1 with a temporary data dir,
and a local HTTP origin serving the shared corpus for URL downloads.

PROFILE_IMAGE_BIN names the server binary and PROFILE_IMAGE_CORPUS the corpus directory
(tests/python_client.rs sets both).
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

LISTENING = re.compile(r'listening on "?([0-9.]+:[0-9]+)')


@pytest.fixture(scope="session")
def corpus() -> Path:
    return Path(os.environ["PROFILE_IMAGE_CORPUS"])


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The address (host:port) of a server allowed to download from 127.0.0.1."""
    data_dir = tmp_path_factory.mktemp("server") / "data"
    process = subprocess.Popen(
        [
            os.environ["PROFILE_IMAGE_BIN"],
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            str(data_dir),
            "--fetch-allow-cidr",
            "127.0.0.0/8",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    address = None
    for line in process.stderr:
        match = LISTENING.search(line)
        if match:
            address = match.group(1)
            break
    assert address, "the server never logged 'listening on ADDR'"
    # Keep reading its log so the server never blocks on a full pipe.
    threading.Thread(target=process.stderr.read, daemon=True).start()
    try:
        yield address
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def origin(corpus: Path) -> Iterator[str]:
    """Base URL of an HTTP server serving the corpus directory."""
    handler = functools.partial(_QuietHandler, directory=str(corpus))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def user() -> str:
    """A user no other test touches."""
    return f"py-{uuid.uuid4().hex[:12]}"
