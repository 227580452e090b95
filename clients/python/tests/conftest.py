"""Fixtures: the real profile-image server binary on 127.0.0.1 with a temporary data dir,
and a local HTTP origin serving the shared corpus for URL downloads.

PROFILE_IMAGE_BIN names the server binary, PROFILE_IMAGE_CORPUS the corpus directory and
PROFILE_IMAGE_TLS the directory of the test TLS certificates (tests/python_client.rs sets
all three).

Authentication is on: the server starts with no key configured, so it creates its own
secret in its data dir, and ``profile-image token`` signs the tests' tokens with it.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import socket
import ssl
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
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("server") / "data"


def make_token(data_dir: Path, *args: str) -> str:
    """``profile-image token --data-dir DATA_DIR ARGS...``: a token the server accepts."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PROFILE_IMAGE_JWT")}
    return subprocess.run(
        [os.environ["PROFILE_IMAGE_BIN"], "token", "--data-dir", str(data_dir), *args],
        check=True,
        capture_output=True,
        text=True,
        env=environment,
    ).stdout.strip()


@pytest.fixture(scope="session")
def token(server: str, data_dir: Path) -> str:
    """An admin's token: the tests act on many users."""
    return make_token(data_dir, "--user", "py-tests", "--admin")


@pytest.fixture(scope="session")
def server(data_dir: Path) -> Iterator[str]:
    """The address (host:port) of a server allowed to download from 127.0.0.1, with no
    rate limit (the tests change images back to back)."""
    process = subprocess.Popen(
        [
            os.environ["PROFILE_IMAGE_BIN"],
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--data-dir",
            str(data_dir),
            "--fetch-allow-cidr",
            "127.0.0.0/8",
            "--rate-limit-per-minute",
            "0",
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


class Proxy:
    """A TCP proxy to ``target`` whose connections can be cut: ``cut`` drops them all and
    refuses new ones until ``resume``."""

    def __init__(self, target: str) -> None:
        host, port = target.rsplit(":", 1)
        self._target = (host, int(port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._refusing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                inbound, _ = self._listener.accept()
            except OSError:
                return  # closed
            if self._refusing:
                inbound.close()
                continue
            outbound = socket.create_connection(self._target)
            with self._lock:
                self._sockets.update((inbound, outbound))
            for source, sink in ((inbound, outbound), (outbound, inbound)):
                threading.Thread(target=_pump, args=(source, sink), daemon=True).start()

    def cut(self) -> None:
        self._refusing = True
        with self._lock:
            for connection in self._sockets:
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                connection.close()
            self._sockets.clear()

    def resume(self) -> None:
        self._refusing = False

    def close(self) -> None:
        self.cut()
        self._listener.close()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass


@pytest.fixture
def proxy(server: str) -> Iterator[Proxy]:
    """A cuttable TCP proxy to the server."""
    cuttable = Proxy(server)
    try:
        yield cuttable
    finally:
        cuttable.close()


@pytest.fixture(scope="session")
def tls_dir() -> Path:
    return Path(os.environ["PROFILE_IMAGE_TLS"])


@pytest.fixture
def tls_proxy(server: str, tls_dir: Path) -> Iterator[str]:
    """``localhost:PORT`` of a proxy terminating TLS (localhost.crt, ALPN h2) in front of
    the plaintext server."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_dir / "localhost.crt", tls_dir / "localhost.key")
    context.set_alpn_protocols(["h2"])
    host, port = server.rsplit(":", 1)
    listener = socket.create_server(("127.0.0.1", 0))

    def serve(raw: socket.socket) -> None:
        try:
            inbound = context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            raw.close()
            return
        outbound = socket.create_connection((host, int(port)))
        threading.Thread(target=_pump, args=(outbound, inbound), daemon=True).start()
        _pump(inbound, outbound)

    def accept() -> None:
        while True:
            try:
                raw, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(raw,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"localhost:{listener.getsockname()[1]}"
    finally:
        listener.close()
