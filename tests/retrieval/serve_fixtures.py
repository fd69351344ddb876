"""Helpers for the web tests: a real uvicorn server in a thread, raw HTTP for hostile requests."""

from __future__ import annotations

import http.client
import io
import select
import socket
from pathlib import Path

import numpy as np
from PIL import Image

from foldervision.web.server import serving_in_thread

live_server = serving_in_thread
"""A real uvicorn server on a free loopback port for the block; yields the base URL."""


def raw_get(base_url: str, raw_path: str) -> tuple[int, bytes]:
    """GET a path exactly as written: no client normalises `..` or re-encodes `%`."""
    host, port = base_url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request("GET", raw_path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def noise_bmp(megabytes: int) -> bytes:
    """A real, valid image file of about `megabytes` MB (uncompressed BMP of noise)."""
    side = int((megabytes * 1024 * 1024 / 3) ** 0.5) + 1
    pixels = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="BMP")
    return buffer.getvalue()


def post_streaming(base_url: str, file_bytes: bytes, chunked: bool) -> tuple[bytes, int, int]:
    """POST a multipart upload in 64 KiB pieces, stopping as soon as the server answers.

    Returns (the response's first bytes, bytes of the body sent, bytes of the whole body): a
    server that refuses without reading the body whole answers before it has all been sent.
    """
    host, port = base_url.removeprefix("http://").rsplit(":", 1)
    boundary = b"foldervisionboundary"
    body = (
        b"--" + boundary + b'\r\nContent-Disposition: form-data; name="file"; filename="big.bmp"'
        b"\r\nContent-Type: image/bmp\r\n\r\n" + file_bytes + b"\r\n--" + boundary + b"--\r\n"
    )
    length_header = b"Transfer-Encoding: chunked" if chunked else b"Content-Length: %d" % len(body)
    head = (
        b"POST /api/search HTTP/1.1\r\nHost: " + host.encode() + b"\r\n"
        b"Content-Type: multipart/form-data; boundary="
        + boundary
        + b"\r\n"
        + length_header
        + b"\r\n\r\n"
    )
    sent = 0
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head)
        try:
            while sent < len(body):
                piece = body[sent : sent + 65536]
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                sent += len(piece)
                if select.select([sock], [], [], 0)[0]:
                    break
            if sent == len(body) and chunked:
                sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        return _read_answer(sock), sent, len(body)


def _read_answer(sock: socket.socket) -> bytes:
    """Read until the server closes (it says `Connection: close`) or resets the connection."""
    answer = b""
    try:
        while piece := sock.recv(65536):
            answer += piece
    except (ConnectionResetError, TimeoutError):
        pass
    return answer


def folder_snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under `folder` (hidden ones too) with its size and mtime."""
    return {
        path.relative_to(folder).as_posix(): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }
