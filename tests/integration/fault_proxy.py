# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A fault-injecting HTTP proxy on loopback, between the modules and an object store server.

The modules talk to the proxy as their endpoint_url; it reads each request's head and body,
and either relays it to the store (rewritten to `Connection: close`, so that every request
has a connection of its own and a fault never spills onto the next request) or answers
it with a fault of a rule that matches:

- `reset`: the connection is reset (RST, through SO_LINGER 0) without an answer;
- `stall`: nothing is answered for `seconds`, then the connection is closed;
- `status`: an S3-style XML error with that HTTP status (500 InternalError, 503 SlowDown);
- `corrupt`: relayed with one byte of its body changed (the length stays), as a link or a
  store that damages data would;
- `truncate`: relayed with the last `drop` bytes of its body left out, Content-Length fixed and
  the checksum headers removed: a store that acknowledges a short object;
- `hook`: relayed after `hook(method, target)` has run, for a test to act on the store at that
  moment (another writer that gets there first).

A rule matches requests by method and a regular expression on the request target (path
and query), lets `skip` matching requests through first, then faults the next `times`
ones (None: all of them). What each rule did is counted, so that a test can assert that
its fault was injected at all.
"""

from __future__ import annotations

import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Tuple

TAMPERING = ("corrupt", "truncate")
# Headers that carry a checksum of the request body, removed by `truncate`.
CHECKSUM_HEADERS = (b"content-md5:", b"x-amz-checksum-", b"x-amz-sdk-checksum-algorithm:", b"x-goog-hash:")
ERROR_CODES = {500: ("InternalError", "We encountered an internal error. Please try again."),
               503: ("SlowDown", "Please reduce your request rate.")}
REASONS = {500: "Internal Server Error", 503: "Service Unavailable"}


@dataclass
class FaultRule:
    """Which requests fail, and how."""

    method: str
    target: str
    action: str  # reset, stall, status, corrupt or truncate
    status: int = 500
    seconds: float = 0.0
    drop: int = 1
    hook: Optional[Callable[[str, str], None]] = None
    skip: int = 0
    times: Optional[int] = 1
    seen: int = 0
    injected: int = 0
    engaged: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        if self.action not in ("reset", "stall", "status", "hook") + TAMPERING:
            raise ValueError("unknown fault action %r" % self.action)
        self._pattern = re.compile(self.target)

    def claims(self, method: str, target: str) -> bool:
        """Count a matching request; True if this one gets the fault."""
        if method != self.method or not self._pattern.search(target):
            return False
        self.seen += 1
        if self.seen <= self.skip or (self.times is not None and self.injected >= self.times):
            return False
        self.injected += 1
        self.engaged.set()
        return True


class FaultProxy:
    """Listens on 127.0.0.1; relays to upstream_port there, or injects the faults of its rules."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.rules: List[FaultRule] = []
        self.requests: List[Tuple[str, str]] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closed = threading.Event()
        threading.Thread(target=self._accept, name="fault-proxy", daemon=True).start()

    @property
    def endpoint_url(self) -> str:
        return "http://127.0.0.1:%d" % self.port

    def add(self, rule: FaultRule) -> FaultRule:
        with self._lock:
            self.rules.append(rule)
        return rule

    def close(self) -> None:
        self._closed.set()
        self._listener.close()

    def __enter__(self) -> "FaultProxy":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client = self._listener.accept()[0]
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _rule_for(self, method: str, target: str) -> Optional[FaultRule]:
        with self._lock:
            self.requests.append((method, target))
            for rule in self.rules:
                if rule.claims(method, target):
                    return rule
        return None

    def _serve(self, client: socket.socket) -> None:
        with client:
            try:
                request = _read_request(client)
            except (OSError, ValueError):
                return
            if request is None:
                return
            method, target, head, body = request
            rule = self._rule_for(method, target)
            if rule is None:
                self._relay(client, head, body)
            elif rule.action in TAMPERING:
                self._relay(client, *_tampered(rule, head, body))
            elif rule.action == "hook":
                if rule.hook is not None:
                    rule.hook(method, target)
                self._relay(client, head, body)
            else:
                self._inject(client, rule)

    def _relay(self, client: socket.socket, head: bytes, body: bytes) -> None:
        try:
            with socket.create_connection(("127.0.0.1", self.upstream_port), timeout=300) as upstream:
                upstream.sendall(_with_connection_close(head) + body)
                # The answer says `Connection: close` too, so that the client does not try
                # to reuse a connection the proxy is about to close.
                answer = b""
                while b"\r\n\r\n" not in answer:
                    data = upstream.recv(1 << 16)
                    if not data:
                        raise OSError("the store closed the connection before it answered")
                    answer += data
                answer_head, _separator, rest = answer.partition(b"\r\n\r\n")
                client.sendall(_with_connection_close(answer_head) + rest)
                while True:
                    data = upstream.recv(1 << 16)
                    if not data:
                        return
                    client.sendall(data)
        except OSError:
            _reset(client)

    @staticmethod
    def _inject(client: socket.socket, rule: FaultRule) -> None:
        if rule.action == "reset":
            _reset(client)
        elif rule.action == "stall":
            time.sleep(rule.seconds)
        else:
            code, message = ERROR_CODES.get(rule.status, ("InternalError", "Injected fault."))
            body = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>%s</Code><Message>%s</Message>'
                    '<RequestId>pgcloud-fault</RequestId></Error>' % (code, message)).encode()
            head = ("HTTP/1.1 %d %s\r\nContent-Type: application/xml\r\nContent-Length: %d\r\n"
                    "Connection: close\r\n\r\n" % (rule.status, REASONS.get(rule.status, "Error"), len(body)))
            client.sendall(head.encode() + body)


def _read_request(client: socket.socket) -> Optional[Tuple[str, str, bytes, bytes]]:
    """(method, target, head, body) of the one request on this connection; None if it closed first."""
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        data = client.recv(1 << 16)
        if not data:
            return None
        buffer += data
    head, _separator, body = buffer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, target = lines[0].split(" ", 2)[:2]
    headers = {}
    for line in lines[1:]:
        name, _colon, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", ""):
        raise ValueError("chunked request bodies are not supported by the fault proxy")
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        data = client.recv(min(1 << 20, length - len(body)))
        if not data:
            return None
        body += data
    return method, target, head + b"\r\n\r\n", body


def _tampered(rule: FaultRule, head: bytes, body: bytes) -> Tuple[bytes, bytes]:
    """The request as `corrupt` or `truncate` changes it."""
    if not body:
        return head, body
    if rule.action == "corrupt":
        middle = len(body) // 2
        return head, body[:middle] + bytes([body[middle] ^ 0xFF]) + body[middle + 1:]
    body = body[:max(0, len(body) - rule.drop)]
    lines = [line for line in head.rstrip(b"\r\n").split(b"\r\n")
             if not line.lower().startswith(CHECKSUM_HEADERS + (b"content-length:",))]
    return b"\r\n".join(lines + [b"Content-Length: %d" % len(body)]) + b"\r\n\r\n", body


def _with_connection_close(head: bytes) -> bytes:
    lines = [line for line in head.rstrip(b"\r\n").split(b"\r\n")
             if not line.lower().startswith((b"connection:", b"keep-alive:"))]
    return b"\r\n".join(lines + [b"Connection: close"]) + b"\r\n\r\n"


def _reset(connection: socket.socket) -> None:
    """Close with RST rather than FIN: the client sees 'connection reset by peer'."""
    try:
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        connection.close()
    except OSError:
        pass
