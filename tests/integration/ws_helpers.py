"""Peers for test_websocket.py (issue 17): a TLS WebSocket origin on loopback that
records everything it receives, WebSocket clients that talk through the proxy's CONNECT
tunnel, and a real browser.

- WsOrigin: raw TLS sockets, the protocol done by wsproto (a reference implementation:
  strict framing, permessage-deflate). It echoes each data message back with "echo:"
  in front, answers "emit:<name>" with a canned server message (SERVER_MESSAGES; also
  "emit:fragmented" and "emit:close", see SERVER_FRAGMENTS / SERVER_CLOSE), serves
  the browser page PAGE_HTML at /page, and records per WebSocket connection: the request
  head it got, the extensions it negotiated, every raw byte after the handshake, the data
  it decoded (every fragment as wsproto delivered it, and whole messages), the close code
  it got and how the connection ended. `leaks()` looks for values in all of it, including
  the raw frames unmasked (and inflated) by this module's own decoder, so a frame wsproto
  would refuse still counts as received.
- WsClient: wsproto client over a socket (the TLS socket inside a CONNECT tunnel), with
  or without permessage-deflate, fragmented sends and pings.
- RawWsClient: a hand-made handshake and hand-made frames (encode_frame) for protocol
  violations: unmasked frames, RSV bits, oversized or fragmented control frames, bad UTF-8.
- websockets_session: python3-websockets' asyncio client over the same tunnel.
- Chromium: headless Chromium (Debian chromium + chromium-driver, driven by selenium)
  using the proxy, trusting the cluster CA through a fresh NSS database."""
import asyncio
import base64
import hashlib
import json
import os
import random
import socket
import ssl
import string
import struct
import subprocess
import tempfile
import threading
import time
import urllib.parse
import zlib
from dataclasses import dataclass

from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (AcceptConnection, BytesMessage, CloseConnection, Ping, Pong, RejectConnection,
                            RejectData, Request, TextMessage)
from wsproto.extensions import PerMessageDeflate

from proxy_helpers import connect_tunnel

# ---------------------------------------------------------------------------- values
CARD = "4539 1488 0343 6467"            # Visa, Luhn-valid: pii.credit_card (BLOCK)
CARD_COMPACT = "4539148803436467"
IBAN = "CH93 0076 2011 6238 5295 7"     # mod-97 valid: pii.iban (BLOCK)
IBAN_COMPACT = "CH9300762011623852957"
SERVER_MESSAGES = {
    "card": "statement ready: your card " + CARD + " was charged",
}
# "emit:fragmented": one text message in these three fragments, a ping between the first two.
SERVER_FRAGMENTS = ["server part one, ", "server part two, ", "server part three"]
SERVER_CLOSE = (4001, "origin says bye")  # "emit:close": the origin starts the close handshake

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def tag(prefix="tag"):
    """A unique marker of letters only (digits could make the DLP rules fire)."""
    return prefix + "-" + "".join(random.choice(string.ascii_lowercase) for _ in range(14))


def needles_for(value):
    """What must never be found at the origin for a blocked value: the value as written,
    compact, and each half of it (a fragment of it would be a leak too)."""
    v = value.encode() if isinstance(value, str) else value
    compact = v.replace(b" ", b"")
    half = len(v) // 2
    return [v, compact, v[:half].strip(), v[half:].strip()]


# ---------------------------------------------------------------------------- frames
def mask_bytes(key, data):
    n = len(data)
    if n == 0:
        return b""
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big")


def encode_frame(opcode, payload=b"", fin=True, rsv1=False, rsv2=False, rsv3=False, mask=True, key=None):
    """One RFC 6455 frame, exactly as asked (nothing checked: it writes violations too)."""
    if isinstance(payload, str):
        payload = payload.encode()
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | (0x20 if rsv2 else 0) | (0x10 if rsv3 else 0) | opcode
    n = len(payload)
    if n < 126:
        head = bytes([b0, (0x80 if mask else 0) | n])
    elif n < 65536:
        head = bytes([b0, (0x80 if mask else 0) | 126]) + struct.pack(">H", n)
    else:
        head = bytes([b0, (0x80 if mask else 0) | 127]) + struct.pack(">Q", n)
    if not mask:
        return head + payload
    key = key or os.urandom(4)
    return head + key + mask_bytes(key, payload)


def close_payload(code, reason=""):
    return struct.pack(">H", code) + reason.encode()


@dataclass
class Frame:
    fin: bool
    rsv1: bool
    rsv2: bool
    rsv3: bool
    opcode: int
    masked: bool
    payload: bytes  # unmasked

    def close_code(self):
        return struct.unpack(">H", self.payload[:2])[0] if len(self.payload) >= 2 else 1005

    def close_reason(self):
        return self.payload[2:].decode("utf-8", "replace")


def parse_frame(buf, pos=0):
    """(Frame, next position) or (None, pos) when buf holds no whole frame at pos. Lenient:
    it decodes whatever the header says."""
    if len(buf) - pos < 2:
        return None, pos
    b0, b1 = buf[pos], buf[pos + 1]
    n = b1 & 0x7F
    p = pos + 2
    if n == 126:
        if len(buf) - p < 2:
            return None, pos
        n = struct.unpack(">H", bytes(buf[p:p + 2]))[0]
        p += 2
    elif n == 127:
        if len(buf) - p < 8:
            return None, pos
        n = struct.unpack(">Q", bytes(buf[p:p + 8]))[0]
        p += 8
    masked = bool(b1 & 0x80)
    key = b""
    if masked:
        if len(buf) - p < 4:
            return None, pos
        key = bytes(buf[p:p + 4])
        p += 4
    if len(buf) - p < n:
        return None, pos
    payload = bytes(buf[p:p + n])
    if masked:
        payload = mask_bytes(key, payload)
    return Frame(bool(b0 & 0x80), bool(b0 & 0x40), bool(b0 & 0x20), bool(b0 & 0x10), b0 & 0x0F, masked,
                 payload), p + n


def parse_frames(buf):
    frames, pos = [], 0
    while True:
        f, pos = parse_frame(buf, pos)
        if f is None:
            return frames, bytes(buf[pos:])
        frames.append(f)


# ---------------------------------------------------------------------------- HTTP bits
def read_head(sock, buf=b"", limit=65536):
    """(head incl. the blank line, bytes after it) or (None, buf) at EOF."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            return None, buf
        buf += chunk
        if len(buf) > limit:
            raise ConnectionError("head too long")
    end = buf.index(b"\r\n\r\n") + 4
    return buf[:end], buf[end:]


def parse_head(head):
    lines = head[:-4].decode("latin-1").split("\r\n")
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name.strip().lower(), value.strip()))
    return lines[0], headers


def header(headers, name, default=None):
    vals = [v for k, v in headers if k == name]
    return ", ".join(vals) if vals else default


def read_response(sock, timeout=10):
    """(status, headers, body) of one HTTP/1.1 response (Content-Length or read to EOF)."""
    sock.settimeout(timeout)
    head, rest = read_head(sock)
    if head is None:
        raise ConnectionError("connection closed before a response: %r" % rest)
    line, headers = parse_head(head)
    status = int(line.split()[1])
    n = header(headers, "content-length")
    body = rest
    if status == 101:
        return status, headers, body
    if n is not None:
        while len(body) < int(n):
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    else:
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                body += chunk
        except (socket.timeout, ssl.SSLError, OSError):
            pass
    return status, headers, body


# ---------------------------------------------------------------------------- browser page
PAGE_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>ws-test</title></head>
<body><pre id="result"></pre>
<script>
// The test passes {url, msgs, timeout} in the hash (never sent to a server). Each message
// is sent after the answer to the previous one; then the page closes with 1000.
const cfg = JSON.parse(decodeURIComponent(location.hash.slice(1)));
const out = {opened: false, extensions: null, echoes: [], sent: 0, error: false, close: null};
let finished = false;
function finish() {
  if (finished) return;
  finished = true;
  document.getElementById('result').textContent = JSON.stringify(out);
  document.title = 'done';
}
const ws = new WebSocket(cfg.url);
function next() {
  if (out.sent < cfg.msgs.length) { ws.send(cfg.msgs[out.sent]); out.sent++; }
  else { ws.close(1000, 'page done'); }
}
ws.onopen = () => { out.opened = true; out.extensions = ws.extensions; next(); };
ws.onmessage = (e) => { out.echoes.push(typeof e.data === 'string' ? e.data : '<binary>'); next(); };
ws.onerror = () => { out.error = true; };
ws.onclose = (e) => { out.close = {code: e.code, reason: e.reason, wasClean: e.wasClean}; finish(); };
setTimeout(finish, cfg.timeout || 15000);
</script></body></html>
"""


# ---------------------------------------------------------------------------- origin
class OriginWsConn:
    """What the origin got on one WebSocket connection."""

    def __init__(self, path, head, headers):
        self.path = path
        self.head = head                  # the request head as received
        self.headers = headers            # [(name lower, value)]
        self.offered_extensions = header(headers, "sec-websocket-extensions")
        self.accepted_extensions = None   # what the origin answered in its 101
        self.raw = bytearray()            # every byte after the request head
        self.fragments = []               # (opcode, data bytes, message_finished) as wsproto decoded them
        self.messages = []                # (opcode, whole message bytes)
        self.pings = []
        self.pongs = []
        self.close_received = None        # (code, reason) of the peer's close frame
        self.protocol_error = None        # (code, reason) when wsproto refused a frame
        self.end = None                   # "closed" | "eof" | "reset: ..."
        self.done = threading.Event()
        self.lock = threading.Lock()
        self._pending = b""               # the message being received (fragments so far)

    @property
    def deflate(self):
        return bool(self.accepted_extensions and "permessage-deflate" in self.accepted_extensions)

    def frames(self):
        """The client's frames as this module's lenient decoder reads the raw bytes."""
        with self.lock:
            return parse_frames(bytes(self.raw))[0]

    def texts(self):
        return [d.decode("utf-8", "replace") for op, d in self.messages if op == OP_TEXT]

    def decoded_views(self):
        """Every form in which the received bytes could hold a value: the raw bytes, the
        unmasked payloads of the data frames joined, those of the other frames, each message inflated by this module
        (permessage-deflate), and what wsproto decoded."""
        with self.lock:
            raw = bytes(self.raw)
            frags = b"".join(d for _, d, _ in self.fragments)
        frames = parse_frames(raw)[0]
        views = {"raw": raw, "wsproto": frags}
        views["payloads"] = b"".join(f.payload for f in frames if f.opcode in (OP_CONT, OP_TEXT, OP_BINARY))
        views["control"] = b"\n".join(f.payload for f in frames if f.opcode not in (OP_CONT, OP_TEXT, OP_BINARY))
        inflater = zlib.decompressobj(-15)
        inflated, msg, compressed = [], b"", False
        for f in frames:
            if f.opcode not in (OP_CONT, OP_TEXT, OP_BINARY):
                continue
            if f.opcode != OP_CONT:
                compressed, msg = f.rsv1, b""
            msg += f.payload
            if f.fin and compressed:
                try:
                    if inflater.eof:
                        inflater = zlib.decompressobj(-15)
                    inflated.append(inflater.decompress(msg + b"\x00\x00\xff\xff"))
                except zlib.error:
                    inflated.append(b"<inflate error>")
        views["inflated"] = b"\n".join(inflated)
        return views

    def leaks(self, needles):
        """[(needle, where)] for each needle found in anything this connection received."""
        found = []
        views = self.decoded_views()
        for n in needles:
            n = n.encode() if isinstance(n, str) else n
            for where, data in views.items():
                if n and n in data:
                    found.append((n, where))
        return found

    def wait_end(self, timeout=5.0):
        return self.done.wait(timeout)


class WsOrigin:
    """A TLS origin on 127.0.0.1: WebSocket echo at any path, the test page at /page.

    Known limit of wsproto 1.2 (Debian bookworm) as the receiver: a control frame between
    the fragments of a *compressed* message resets its inflate state (extensions.py,
    frame_inbound_complete), so it reads the next fragment as uncompressed and closes 1007.
    Tests that put a ping between fragments therefore do not negotiate permessage-deflate."""

    def __init__(self, cert, key):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.ctx.set_alpn_protocols(["http/1.1"])
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.ws = []                      # OriginWsConn, in accept order
        self.requests = []                # (method, target, headers) of every HTTP request
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    # -- queries
    def conns(self, path):
        with self.lock:
            return [c for c in self.ws if c.path == path]

    def wait_conn(self, path, timeout=5.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            c = self.conns(path)
            if c:
                return c[0]
            time.sleep(0.02)
        raise AssertionError(f"the origin got no WebSocket handshake for {path}; requests: "
                             f"{[r[:2] for r in self.requests]}")

    def got_request(self, path):
        with self.lock:
            return [r for r in self.requests if r[1] == path]

    def leaks_anywhere(self, needles):
        """Needles (unique tags) found on any WebSocket connection the origin ever had."""
        with self.lock:
            conns = list(self.ws)
        return [(c.path,) + hit for c in conns for hit in c.leaks(needles)]

    # -- serving
    def _accept(self):
        while not self.closed:
            try:
                s, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(s,), daemon=True).start()

    def _serve(self, s):
        s.settimeout(20)
        try:
            tls = self.ctx.wrap_socket(s, server_side=True)
        except (ssl.SSLError, OSError):
            s.close()
            return
        buf = b""
        try:
            while True:
                head, buf = read_head(tls, buf)
                if head is None:
                    return
                line, headers = parse_head(head)
                method, target = line.split()[0], line.split()[1]
                with self.lock:
                    self.requests.append((method, target, headers))
                n = int(header(headers, "content-length", "0") or 0)
                while len(buf) < n:
                    chunk = tls.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                buf = buf[n:]
                upgrade = (header(headers, "upgrade") or "").lower()
                if upgrade == "websocket":
                    self._websocket(tls, target, head, headers, buf)
                    return
                if target.split("?")[0] == "/page":
                    body, ctype, status = PAGE_HTML.encode(), "text/html; charset=utf-8", "200 OK"
                elif upgrade:
                    body, ctype, status = b"no upgrade here\n", "text/plain", "200 OK"
                else:
                    body, ctype, status = b"not found\n", "text/plain", "404 Not Found"
                tls.sendall(f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                            "Cache-Control: no-store\r\n\r\n".encode() + body)
                if (header(headers, "connection") or "").lower() == "close":
                    return
        except (OSError, ssl.SSLError, ConnectionError, ValueError, IndexError):
            return
        finally:
            try:
                tls.close()
            except OSError:
                pass

    def _websocket(self, tls, target, head, headers, rest):
        conn = OriginWsConn(target.split("?")[0], head, headers)
        with self.lock:
            self.ws.append(conn)
        ws = WSConnection(ConnectionType.SERVER)
        try:
            ws.receive_data(head)
            for ev in ws.events():
                if isinstance(ev, Request):
                    out = ws.send(AcceptConnection(extensions=[PerMessageDeflate()]))
                    _, resp_headers = parse_head(out[:out.index(b"\r\n\r\n") + 4])
                    conn.accepted_extensions = header(resp_headers, "sec-websocket-extensions")
                    tls.sendall(out)
            if rest:
                with conn.lock:
                    conn.raw += rest
                ws.receive_data(rest)
                if self._events(tls, ws, conn):
                    return
            while True:
                try:
                    data = tls.recv(65536)
                except (ssl.SSLError, ConnectionResetError) as e:
                    conn.end = "reset: %s" % e
                    return
                if not data:
                    conn.end = conn.end or "eof"
                    return
                with conn.lock:
                    conn.raw += data
                ws.receive_data(data)
                if self._events(tls, ws, conn):
                    return
        except Exception as e:  # the record says how it ended; the test decides
            conn.end = conn.end or "error: %r" % e
        finally:
            conn.done.set()

    def _events(self, tls, ws, conn):
        """Handles what wsproto decoded; True once the connection is over."""
        for ev in ws.events():
            if isinstance(ev, (TextMessage, BytesMessage)):
                op = OP_TEXT if isinstance(ev, TextMessage) else OP_BINARY
                data = ev.data.encode() if op == OP_TEXT else bytes(ev.data)
                with conn.lock:
                    conn.fragments.append((op, data, ev.message_finished))
                conn._pending += data
                if ev.message_finished:
                    whole, conn._pending = conn._pending, b""
                    with conn.lock:
                        conn.messages.append((op, whole))
                    for answer in self._answer(op, whole):
                        tls.sendall(ws.send(answer))
            elif isinstance(ev, Ping):
                conn.pings.append(ev.payload)
                tls.sendall(ws.send(ev.response()))
            elif isinstance(ev, Pong):
                conn.pongs.append(ev.payload)
            elif isinstance(ev, CloseConnection):
                if ws.state == ConnectionState.REMOTE_CLOSING:
                    conn.close_received = (int(ev.code), ev.reason)
                    try:
                        tls.sendall(ws.send(ev.response()))
                    except OSError:
                        pass
                elif ws.state == ConnectionState.OPEN:  # wsproto refused a frame
                    conn.protocol_error = (int(ev.code), ev.reason)
                    try:
                        tls.sendall(ws.send(CloseConnection(code=ev.code, reason="origin: " + ev.reason[:60])))
                    except OSError:
                        pass
                else:
                    conn.close_received = (int(ev.code), ev.reason)
                conn.end = "closed"
                return True
        return False

    @staticmethod
    def _answer(op, data):
        """The events the origin sends back for one whole message."""
        if op != OP_TEXT:
            return [BytesMessage(data=b"echo:" + data)]
        text = data.decode()
        if text == "emit:fragmented":
            a, b, c = SERVER_FRAGMENTS
            return [TextMessage(data=a, message_finished=False), Ping(payload=b"server-ping"),
                    TextMessage(data=b, message_finished=False), TextMessage(data=c)]
        if text == "emit:close":
            return [CloseConnection(code=SERVER_CLOSE[0], reason=SERVER_CLOSE[1])]
        if text.startswith("emit:"):
            return [TextMessage(data=SERVER_MESSAGES[text[5:]])]
        return [TextMessage(data="echo:" + text)]

    def close(self):
        self.closed = True
        self.sock.close()


# ---------------------------------------------------------------------------- clients
class HandshakeRefused(AssertionError):
    def __init__(self, status, body):
        super().__init__(f"WebSocket handshake refused: HTTP {status}: {body[:300]!r}")
        self.status, self.body = status, body


class Closed(Exception):
    def __init__(self, code, reason, frame):
        super().__init__(f"closed: code {code} reason {reason!r} ({'close frame' if frame else 'no close frame'})")
        self.code, self.reason, self.frame = code, reason, frame


def tls_tunnel(proxy_port, host, port, cafile, timeout=10):
    """A TLS socket to host:port inside a CONNECT tunnel, verifying against cafile."""
    s, status, resp = connect_tunnel(proxy_port, host, port, timeout=timeout)
    if status != 200:
        s.close()
        raise AssertionError("CONNECT refused: %r" % resp)
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.set_alpn_protocols(["http/1.1"])
    tls = ctx.wrap_socket(s, server_hostname=host)
    tls.settimeout(timeout)
    return tls


def direct_tls(port, cafile, host="localhost", timeout=10):
    """A TLS socket straight to the origin (no proxy): the harness checked on its own."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx.wrap_socket(s, server_hostname=host)


class WsClient:
    """wsproto client over a connected (TLS) socket; synchronous."""

    def __init__(self, sock, host, path, deflate=False, extra_headers=(), timeout=10):
        self.sock = sock
        self.sock.settimeout(timeout)
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.inbox = []         # whole messages received: (opcode, data)
        self.pongs = []
        self.closed = None      # Closed once the connection ended
        self.accept = None
        self._msg = (None, b"")
        self._reject = None
        self._reject_body = b""
        exts = [PerMessageDeflate()] if deflate else []
        self.sock.sendall(self.ws.send(Request(host=host, target=path, extensions=exts,
                                               extra_headers=[(k.encode(), v.encode()) for k, v in extra_headers])))
        while self.accept is None:
            if not self._pump():
                raise HandshakeRefused(self._reject or 0, self._reject_body or b"connection closed, no 101")

    @property
    def deflate(self):
        return any(e.name == "permessage-deflate" for e in self.accept.extensions)

    def _pump(self):
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, ssl.SSLError) as e:
            data = None
            self._error = e
        if self.ws.state == ConnectionState.CLOSED:
            if not data:
                return False
            return True
        self.ws.receive_data(data or None)
        for ev in self.ws.events():
            if isinstance(ev, AcceptConnection):
                self.accept = ev
            elif isinstance(ev, RejectConnection):
                self._reject = ev.status_code
                if not ev.has_body:
                    raise HandshakeRefused(ev.status_code, b"")
            elif isinstance(ev, RejectData):
                self._reject_body += ev.data
                if ev.body_finished:
                    raise HandshakeRefused(self._reject, self._reject_body)
            elif isinstance(ev, (TextMessage, BytesMessage)):
                op = OP_TEXT if isinstance(ev, TextMessage) else OP_BINARY
                data_ = ev.data.encode() if op == OP_TEXT else bytes(ev.data)
                self._msg = (op, self._msg[1] + data_)
                if ev.message_finished:
                    self.inbox.append(self._msg)
                    self._msg = (None, b"")
            elif isinstance(ev, Ping):
                self._send_quiet(ev.response())
            elif isinstance(ev, Pong):
                self.pongs.append(ev.payload)
            elif isinstance(ev, CloseConnection):
                self.closed = Closed(int(ev.code), ev.reason or "", bool(data))
                if self.ws.state == ConnectionState.REMOTE_CLOSING:
                    self._send_quiet(ev.response())
                return False
        return bool(data)

    def _send_quiet(self, event):
        try:
            self.sock.sendall(self.ws.send(event))
        except OSError:
            pass

    def send_text(self, text, finished=True):
        self.sock.sendall(self.ws.send(TextMessage(data=text, message_finished=finished)))

    def send_bytes(self, data, finished=True):
        self.sock.sendall(self.ws.send(BytesMessage(data=data, message_finished=finished)))

    def ping(self, payload=b"p"):
        self.sock.sendall(self.ws.send(Ping(payload=payload)))

    def recv(self, timeout=10):
        """The next whole data message (opcode, bytes); raises Closed when the peer closed."""
        end = time.monotonic() + timeout
        while not self.inbox:
            if self.closed:
                raise self.closed
            if time.monotonic() > end:
                raise TimeoutError("no message within %ss" % timeout)
            self.sock.settimeout(max(0.05, end - time.monotonic()))
            if not self._pump() and not self.inbox:
                raise self.closed or Closed(1006, "eof", False)
        return self.inbox.pop(0)

    def recv_text(self, timeout=10):
        op, data = self.recv(timeout)
        assert op == OP_TEXT, (op, data[:100])
        return data.decode()

    def wait_close(self, timeout=10):
        """The Closed the peer ended with (messages that came first stay in inbox)."""
        end = time.monotonic() + timeout
        while self.closed is None:
            if time.monotonic() > end:
                raise TimeoutError("the connection was not closed within %ss" % timeout)
            self.sock.settimeout(max(0.05, end - time.monotonic()))
            try:
                if not self._pump() and self.closed is None:
                    self.closed = Closed(1006, "eof", False)
            except socket.timeout:
                continue
        return self.closed

    def close(self, code=1000):
        if self.ws.state == ConnectionState.OPEN:
            self._send_quiet(CloseConnection(code=code, reason="bye"))
            try:
                self.wait_close(5)
            except (TimeoutError, OSError):
                pass
        try:
            self.sock.close()
        except OSError:
            pass


class RawWsClient:
    """A hand-made handshake and hand-made frames: the client a fuzzer or an attacker is."""

    def __init__(self, sock, host, path, extensions=None, timeout=10):
        self.sock = sock
        self.sock.settimeout(timeout)
        key = base64.b64encode(os.urandom(16))
        req = (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key.decode()}\r\nSec-WebSocket-Version: 13\r\n")
        if extensions:
            req += f"Sec-WebSocket-Extensions: {extensions}\r\n"
        self.sock.sendall((req + "\r\n").encode())
        status, headers, rest = read_response(self.sock, timeout)
        if status != 101:
            raise HandshakeRefused(status, rest)
        want = base64.b64encode(hashlib.sha1(key + WS_GUID).digest()).decode()
        assert header(headers, "sec-websocket-accept") == want, headers
        self.headers = headers
        self.buf = rest

    def send_frame(self, opcode, payload=b"", **kw):
        self.sock.sendall(encode_frame(opcode, payload, **kw))

    def read_frame(self, timeout=10):
        """The next frame from the peer, or None at EOF / reset."""
        end = time.monotonic() + timeout
        while True:
            f, pos = parse_frame(self.buf)
            if f is not None:
                self.buf = self.buf[pos:]
                return f
            if time.monotonic() > end:
                raise TimeoutError("no frame within %ss" % timeout)
            self.sock.settimeout(max(0.05, end - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except (ConnectionResetError, ssl.SSLError, OSError):
                return None
            if not chunk:
                return None
            self.buf += chunk

    def recv_message(self, timeout=10):
        """(opcode, payload) of the next data message (pongs are skipped); Closed on close."""
        op, data = None, b""
        while True:
            f = self.read_frame(timeout)
            if f is None:
                raise Closed(1006, "eof", False)
            if f.opcode == OP_CLOSE:
                raise Closed(f.close_code(), f.close_reason(), True)
            if f.opcode in (OP_PING, OP_PONG):
                continue
            if f.opcode != OP_CONT:
                op = f.opcode
            data += f.payload
            if f.fin:
                return op, data

    def wait_close(self, timeout=10):
        """Closed: the close frame the peer sent (data frames before it are skipped)."""
        end = time.monotonic() + timeout
        while True:
            f = self.read_frame(max(0.1, end - time.monotonic()))
            if f is None:
                return Closed(1006, "eof", False)
            if f.opcode == OP_CLOSE:
                try:
                    self.sock.sendall(encode_frame(OP_CLOSE, f.payload[:2]))
                except OSError:
                    pass
                return Closed(f.close_code(), f.close_reason(), True)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def websockets_session(proxy_port, host, port, path, cafile, messages, timeout=10):
    """python3-websockets' client (permessage-deflate on by default) through the proxy:
    sends each message after the answer to the previous one. Returns (answers, close,
    negotiated extensions header); close is Closed or None when all went through."""
    import websockets

    async def run():
        s, status, resp = connect_tunnel(proxy_port, host, port, timeout=timeout)
        assert status == 200, resp
        s.setblocking(False)
        ctx = ssl.create_default_context(cafile=cafile)
        answers, close, ext = [], None, None
        try:
            async with websockets.connect(f"wss://{host}:{port}{path}", sock=s, ssl=ctx, server_hostname=host,
                                          open_timeout=timeout, close_timeout=3, max_size=None) as ws:
                ext = ws.response_headers.get("Sec-WebSocket-Extensions")
                for m in messages:
                    await ws.send(m)
                    answers.append(await asyncio.wait_for(ws.recv(), timeout))
        except websockets.exceptions.InvalidStatusCode as e:
            raise HandshakeRefused(e.status_code, b"") from None
        except websockets.exceptions.ConnectionClosed as e:
            rcvd = e.rcvd
            close = Closed(rcvd.code, rcvd.reason, True) if rcvd else Closed(1006, "eof", False)
        return answers, close, ext

    return asyncio.run(run())


# ---------------------------------------------------------------------------- browser
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


class Chromium:
    """Headless Chromium through the proxy (--proxy-server), trusting the cluster CA via a
    fresh NSS database in a private HOME ($HOME/.pki/nssdb); no certificate-error bypass.
    Raises RuntimeError with the reason when it cannot start."""

    def __init__(self, proxy_port, cafile, workdir):
        for exe in (CHROMIUM, CHROMEDRIVER, "certutil"):
            if not (os.access(exe, os.X_OK) or subprocess.run(["which", exe], capture_output=True).returncode == 0):
                raise RuntimeError(f"{exe} is not installed (scripts/install-deps.sh installs chromium, "
                                   "chromium-driver, python3-selenium, libnss3-tools)")
        try:
            from selenium import webdriver
            from selenium.webdriver.chrome.service import Service
        except ImportError as e:
            raise RuntimeError(f"python3-selenium is missing: {e}")
        self.home = tempfile.mkdtemp(dir=workdir, prefix="chromium-home-")
        nssdb = os.path.join(self.home, ".pki", "nssdb")
        os.makedirs(nssdb)
        for cmd in (["certutil", "-N", "-d", "sql:" + nssdb, "--empty-password"],
                    ["certutil", "-A", "-d", "sql:" + nssdb, "-n", "egressguard test cluster CA", "-t", "C,,",
                     "-i", cafile]):
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode:
                raise RuntimeError(f"{' '.join(cmd)} failed: {r.stderr}")
        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        for a in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                  "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-extensions",
                  f"--user-data-dir={os.path.join(self.home, 'profile')}",
                  f"--proxy-server=http://127.0.0.1:{proxy_port}",
                  # Chromium never proxies loopback unless told so (localhost, 127.0.0.1, [::1]).
                  "--proxy-bypass-list=<-loopback>"):
            opts.add_argument(a)
        self.log = os.path.join(self.home, "chromedriver.log")
        env = dict(os.environ, HOME=self.home)
        try:
            self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER, log_path=self.log, env=env), options=opts)
        except Exception as e:
            tail = ""
            if os.path.exists(self.log):
                with open(self.log, errors="replace") as f:
                    tail = f.read()[-2000:]
            raise RuntimeError(f"chromium did not start: {e}\n{tail}")
        self.driver.set_page_load_timeout(30)

    def run_page(self, origin_port, ws_path, msgs, timeout=20):
        """Loads https://localhost:PORT/page through the proxy; the page opens
        wss://localhost:PORT<ws_path> and sends msgs. Returns the page's result dict."""
        from selenium.webdriver.common.by import By
        cfg = {"url": f"wss://localhost:{origin_port}{ws_path}", "msgs": msgs, "timeout": timeout * 1000 - 2000}
        url = f"https://localhost:{origin_port}/page#" + urllib.parse.quote(json.dumps(cfg))
        self.driver.get(url)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.driver.title == "done":
                return json.loads(self.driver.find_element(By.ID, "result").text)
            time.sleep(0.1)
        raise AssertionError(f"the page did not finish: title {self.driver.title!r}, url {self.driver.current_url}, "
                             f"source: {self.driver.page_source[:1500]}")

    def quit(self):
        try:
            self.driver.quit()
        except Exception:
            pass
