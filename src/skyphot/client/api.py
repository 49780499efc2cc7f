"""A small HTTP client of the skyphot API (standard library only): JSON requests and a
streamed multipart upload that stops sending as soon as the server answers early (a 413
or a refused token arrives before the body is complete)."""

from __future__ import annotations

import http.client
import json
import mimetypes
import select
import socket
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from skyphot.errors import SkyphotError

CHUNK = 256 * 1024  # bytes sent per write while streaming a file


class ServerError(SkyphotError):
    """The server cannot be reached, or answered something other than the API's JSON."""


@dataclass(frozen=True)
class Reply:
    """One HTTP answer: status and decoded JSON (None when the body was not JSON)."""

    status: int
    body: Any
    text: str

    @property
    def ok(self) -> bool:
        """2xx."""
        return 200 <= self.status < 300

    @property
    def message(self) -> str:
        """The server's own message: the ``error.message`` of the API's error shape."""
        if isinstance(self.body, dict):
            error = self.body.get("error")
            if isinstance(error, dict) and error.get("message"):
                field = error.get("field")
                text = str(error["message"])
                return f"{field}: {text}" if field and not text.startswith(f"{field}:") else text
        snippet = self.text.strip().splitlines()[0][:200] if self.text.strip() else "no body"
        return f"unexpected answer ({snippet})"


@dataclass(frozen=True)
class FilePart:
    """A file field of a multipart form: read from disk while it is sent."""

    field: str
    path: Path


def _part_header(boundary: str, name: str, filename: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"'
    lines = [f"--{boundary}"]
    if filename is not None:
        safe = filename.replace('"', "_").replace("\r", "_").replace("\n", "_")
        disposition += f'; filename="{safe}"'
        kind = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        lines += [f"Content-Disposition: {disposition}", f"Content-Type: {kind}"]
    else:
        lines.append(f"Content-Disposition: {disposition}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


class MultipartBody:
    """A multipart/form-data body of known length whose files are streamed from disk."""

    def __init__(self, fields: Mapping[str, str], files: list[FilePart]) -> None:
        self.boundary = f"skyphot-{uuid.uuid4().hex}"
        self._pieces: list[bytes | Path] = []
        for name, value in fields.items():
            self._pieces += [_part_header(self.boundary, name), value.encode("utf-8"), b"\r\n"]
        for part in files:
            self._pieces += [_part_header(self.boundary, part.field, part.path.name), part.path,
                             b"\r\n"]
        self._pieces.append(f"--{self.boundary}--\r\n".encode())
        self.length = sum(p.stat().st_size if isinstance(p, Path) else len(p)
                          for p in self._pieces)

    @property
    def content_type(self) -> str:
        """The Content-Type header value."""
        return f"multipart/form-data; boundary={self.boundary}"

    def chunks(self) -> Iterator[bytes]:
        """The body, piece by piece (files in CHUNK-sized reads)."""
        for piece in self._pieces:
            if isinstance(piece, bytes):
                yield piece
                continue
            with piece.open("rb") as stream:
                while block := stream.read(CHUNK):
                    yield block


class ApiClient:
    """Requests to one skyphot server with one API token.

    Each request uses its own connection, so one client may be shared by threads.
    """

    def __init__(self, url: str, token: str, *, timeout: float = 120.0) -> None:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ServerError(f"server URL {url!r} is not http(s)://host[:port]")
        self.url = url
        self._scheme = parts.scheme
        self._host = parts.hostname
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        self._token = token
        self.timeout = timeout

    def path(self, *segments: str | int) -> str:
        """``/api/...`` under the server's prefix, each segment URL-quoted."""
        return self._prefix + "/api/" + "/".join(quote(str(s), safe="") for s in segments)

    def _connect(self) -> http.client.HTTPConnection:
        if self._scheme == "https":
            return http.client.HTTPSConnection(self._host, self._port, timeout=self.timeout)
        return http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self._token}", "Accept": "application/json",
                "User-Agent": "skyphot-batch"}

    def _unreachable(self, err: OSError | http.client.HTTPException) -> ServerError:
        reason = getattr(err, "strerror", None) or str(err) or type(err).__name__
        return ServerError(
            f"cannot reach the skyphot server at {self.url} ({reason}); check --url and that "
            "`skyphot serve` is running there"
        )

    @staticmethod
    def _reply(response: http.client.HTTPResponse) -> Reply:
        raw = response.read()
        text = raw.decode("utf-8", "replace")
        try:
            body = json.loads(text) if text else None
        except ValueError:
            body = None
        return Reply(response.status, body, text)

    def get(self, path: str) -> Reply:
        """GET ``path`` (from ``self.path``). Raises ``ServerError`` when unreachable."""
        connection = self._connect()
        try:
            connection.request("GET", path, headers=self._headers())
            return self._reply(connection.getresponse())
        except (OSError, http.client.HTTPException) as err:
            raise self._unreachable(err) from err
        finally:
            connection.close()

    def post_json(self, path: str, body: Any = None) -> Reply:
        """POST a JSON body. Raises ``ServerError`` when unreachable."""
        connection = self._connect()
        data = json.dumps(body).encode() if body is not None else b""
        try:
            connection.request("POST", path, body=data, headers={
                **self._headers(), "Content-Type": "application/json"})
            return self._reply(connection.getresponse())
        except (OSError, http.client.HTTPException) as err:
            raise self._unreachable(err) from err
        finally:
            connection.close()

    def upload(self, path: str, body: MultipartBody) -> Reply:
        """POST a multipart body, streamed; stops sending when the server answers early."""
        connection = self._connect()
        try:
            try:
                connection.putrequest("POST", path)
                for name, value in {**self._headers(), "Content-Type": body.content_type,
                                    "Content-Length": str(body.length)}.items():
                    connection.putheader(name, value)
                connection.endheaders()
                for chunk in body.chunks():
                    if _answered(connection.sock):
                        break
                    connection.send(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server stopped reading: its answer (if it sent one) says why
            try:
                return self._reply(connection.getresponse())
            except (OSError, http.client.HTTPException) as err:
                raise self._unreachable(err) from err
        except OSError as err:
            raise self._unreachable(err) from err
        finally:
            connection.close()


def _answered(sock: socket.socket | None) -> bool:
    """True when the server already sent something (an early answer) on ``sock``."""
    if sock is None:
        return False
    readable, _, _ = select.select([sock], [], [], 0)
    return bool(readable)
