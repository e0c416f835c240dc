"""HTTP/2 and gRPC peers for the proxy's h2 tests (test_h2.py), all real and on loopback:

- H2Origin: an h2-over-TLS origin (python3-h2 over ssl + a thread per connection, ALPN h2
  only) that records every request it gets (headers, body length, sha256 and the first
  bytes of the body, resets) per path and answers GET /size/N with pattern_bytes(N) and a
  POST/PUT with {"sha256", "len"} of the body it received.
- Nghttpd: nghttp2's own server (nghttpd) on TLS serving files from a directory.
- http1_only_origin(): proxy_helpers.Origin with ALPN http/1.1 only (or none).
- GrpcOrigin: a grpcio server (generic handlers, bytes in and out: no codegen) on TLS with
  unary, client-streaming and bidi methods that record every message they receive.
- grpc_channel(): a grpcio channel through the proxy (grpc.http_proxy), optionally gzip.
- H2Client: a python3-h2 client over a CONNECT tunnel (or direct), many streams on one
  connection, DATA sent frame by frame when asked.
- RawH2: frames written by hand (hyperframe, hand-made HPACK) for the abuse tests, and the
  frames the peer sends back parsed as they come.
- Metrics scraping of the proxy's admin listener and the proxy's RSS."""
import hashlib
import json
import re
import socket
import ssl
import struct
import subprocess
import threading
import time
import urllib.request
from concurrent import futures

import grpc
import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from hyperframe.frame import (ContinuationFrame, DataFrame, Frame, GoAwayFrame, HeadersFrame, PingFrame,  # noqa: F401
                              RstStreamFrame, SettingsFrame, WindowUpdateFrame)

from proxy_helpers import Origin, connect_tunnel, pattern_bytes

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
NO_ERROR, PROTOCOL_ERROR, REFUSED_STREAM, CANCEL, ENHANCE_YOUR_CALM = 0x0, 0x1, 0x7, 0x8, 0xB
KEEP_BODY = 1 << 20  # the origin keeps this many leading body bytes of each request
BIG_WINDOW = (1 << 24)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------- TLS sockets
def tls_tunnel(proxy_port, host, port, cafile, alpn=("h2",)):
    """CONNECT through the proxy, then TLS (verifying the proxy's minted leaf) offering alpn."""
    s, status, resp = connect_tunnel(proxy_port, host, port)
    if status != 200:
        s.close()
        raise ConnectionError(f"CONNECT {host}:{port} answered {resp[:200]!r}")
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.set_alpn_protocols(list(alpn))
    return ctx.wrap_socket(s, server_hostname=host)


def tls_direct(port, cafile, host="localhost", alpn=("h2",)):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.set_alpn_protocols(list(alpn))
    return ctx.wrap_socket(s, server_hostname=host)


# ---------------------------------------------------------------------------- h2 origin
class RequestRecord:
    def __init__(self, stream_id, headers):
        self.stream_id = stream_id
        self.headers = headers  # list of (name, value) str
        h = dict(headers)
        self.method = h.get(":method", "")
        self.path = h.get(":path", "")
        self.body_len = 0
        self.body_head = bytearray()  # the first KEEP_BODY bytes
        self.sha = hashlib.sha256()
        self.trailers = []
        self.ended = False
        self.reset = None  # error code of an RST_STREAM from the peer
        self.done = threading.Event()

    def body_sha256(self):
        return self.sha.hexdigest()

    def add(self, data):
        self.body_len += len(data)
        self.sha.update(data)
        if len(self.body_head) < KEEP_BODY:
            self.body_head += data[:KEEP_BODY - len(self.body_head)]


class H2OriginState:
    def __init__(self):
        self.lock = threading.Lock()
        self.requests = []  # RequestRecord, in arrival order
        self.alpn = []  # ALPN chosen on each accepted TLS connection
        self.connections = 0

    def for_path(self, path):
        with self.lock:
            return [r for r in self.requests if r.path == path]

    def for_prefix(self, prefix):
        with self.lock:
            return [r for r in self.requests if r.path.startswith(prefix)]

    def received(self, path):
        """Body bytes received for requests to `path`."""
        return sum(r.body_len for r in self.for_path(path))

    def wait_done(self, path, timeout=10.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            recs = self.for_path(path)
            if recs and recs[-1].done.wait(0.05):
                return recs[-1]
            time.sleep(0.02)
        seen = [(r.method, r.path, r.body_len, r.ended, r.reset) for r in self.for_prefix("/")][-20:]
        raise AssertionError(f"the origin saw no finished request for {path}; saw {seen}")

    def contains(self, needle):
        """Any request (headers, path or kept body) holding needle (bytes)."""
        with self.lock:
            for r in self.requests:
                if needle in bytes(r.body_head) or any(needle.decode("latin-1") in v for _, v in r.headers):
                    return True
        return False


class H2Origin:
    """h2 over TLS with ALPN h2 only; a connection that does not negotiate h2 is dropped."""

    def __init__(self, cert, key, max_concurrent_streams=1000):
        self.state = H2OriginState()
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.ctx.set_alpn_protocols(["h2"])
        self.max_streams = max_concurrent_streams
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(512)
        self.port = self.sock.getsockname()[1]
        self.closed = False
        self._big = {}
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self):
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    def _accept(self):
        while not self.closed:
            try:
                raw, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _payload(self, n):
        if n not in self._big:
            self._big[n] = pattern_bytes(n)
        return self._big[n]

    def _serve(self, raw):
        raw.settimeout(30)
        try:
            tls = self.ctx.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):
            raw.close()
            return
        alpn = tls.selected_alpn_protocol()
        with self.state.lock:
            self.state.connections += 1
            self.state.alpn.append(alpn)
        if alpn != "h2":
            tls.close()
            return
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        conn.initiate_connection()
        conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: BIG_WINDOW,
                              h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self.max_streams})
        conn.increment_flow_control_window(BIG_WINDOW)
        records = {}
        pending = {}  # stream id -> [memoryview, offset]
        try:
            tls.sendall(conn.data_to_send())
            tls.settimeout(None)
            while True:
                data = tls.recv(1 << 18)
                if not data:
                    break
                try:
                    events = conn.receive_data(data)
                except h2.exceptions.ProtocolError:
                    tls.sendall(conn.data_to_send())
                    break
                done = False
                for ev in events:
                    if isinstance(ev, h2.events.RequestReceived):
                        rec = RequestRecord(ev.stream_id, list(ev.headers))
                        records[ev.stream_id] = rec
                        with self.state.lock:
                            self.state.requests.append(rec)
                    elif isinstance(ev, h2.events.DataReceived):
                        rec = records.get(ev.stream_id)
                        if rec is not None:
                            rec.add(ev.data)
                        if ev.flow_controlled_length:
                            conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    elif isinstance(ev, h2.events.TrailersReceived):
                        records[ev.stream_id].trailers = list(ev.headers)
                    elif isinstance(ev, h2.events.StreamEnded):
                        rec = records[ev.stream_id]
                        rec.ended = True
                        self._respond(conn, rec, pending)
                        rec.done.set()
                    elif isinstance(ev, h2.events.StreamReset):
                        rec = records.get(ev.stream_id)
                        if rec is not None:
                            rec.reset = ev.error_code
                            rec.done.set()
                        pending.pop(ev.stream_id, None)
                    elif isinstance(ev, h2.events.ConnectionTerminated):
                        done = True
                self._pump(conn, tls, pending)
                out = conn.data_to_send()
                if out:
                    tls.sendall(out)
                if done:
                    break
        except (OSError, ssl.SSLError):
            pass
        finally:
            for rec in records.values():
                rec.done.set()
            try:
                tls.close()
            except OSError:
                pass

    def _respond(self, conn, rec, pending):
        parts = rec.path.split("?")[0].strip("/").split("/")
        if rec.method in ("POST", "PUT"):
            body = json.dumps({"sha256": rec.body_sha256(), "len": rec.body_len}).encode()
            ctype = "application/json"
        elif parts[0] == "size" and len(parts) > 1:
            body = self._payload(int(parts[1]))
            ctype = "application/octet-stream"
        else:
            body = b"ok\n"
            ctype = "text/plain"
        try:
            conn.send_headers(rec.stream_id, [(":status", "200"), ("content-type", ctype),
                                              ("content-length", str(len(body)))])
        except h2.exceptions.ProtocolError:
            return
        pending[rec.stream_id] = [memoryview(body), 0]

    @staticmethod
    def _pump(conn, tls, pending):
        for sid in list(pending):
            view, off = pending[sid]
            try:
                while off < len(view):
                    window = conn.local_flow_control_window(sid)
                    n = min(window, conn.max_outbound_frame_size, len(view) - off)
                    if n <= 0:
                        break
                    conn.send_data(sid, view[off:off + n].tobytes(), end_stream=off + n == len(view))
                    off += n
                    if len(conn._data_to_send) > (1 << 20):  # noqa: SLF001 - flush in 1 MiB pieces
                        tls.sendall(conn.data_to_send())
                if off == len(view) and len(view) == 0:
                    conn.end_stream(sid)
            except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError, KeyError):
                pending.pop(sid, None)
                continue
            if off >= len(view):
                pending.pop(sid, None)
            else:
                pending[sid][1] = off


class Nghttpd:
    """nghttp2's server on 127.0.0.1 over TLS serving files from htdocs."""

    def __init__(self, cert, key, htdocs):
        self.port = free_port()
        self.proc = subprocess.Popen(["nghttpd", "--address=127.0.0.1", f"--htdocs={htdocs}", "--echo-upload",
                                      str(self.port), key, cert],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        end = time.monotonic() + 10
        while time.monotonic() < end:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
        self.proc.kill()
        raise RuntimeError("nghttpd did not start")

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def http1_only_origin(cert, key, alpn=("http/1.1",)):
    """proxy_helpers.Origin (HTTP/1.1 only); alpn=() selects no ALPN protocol at all."""
    o = Origin(cert, key)
    if alpn:
        o.server.socket.context.set_alpn_protocols(list(alpn))
    return o


# ---------------------------------------------------------------------------- gRPC
SERVICE = "eg.Test"
UNARY, COLLECT, CHAT = f"/{SERVICE}/Unary", f"/{SERVICE}/Collect", f"/{SERVICE}/Chat"


class GrpcOrigin:
    """Unary (answers b"ack:" + sha256 hex), client-streaming (answers b"count:N") and bidi
    (echoes b"echo:" + message) methods over TLS; every message received is recorded."""

    def __init__(self, cert, key):
        self.lock = threading.Lock()
        self.messages = []  # (method path, message bytes) in arrival order
        self.calls = []  # method path of every call that reached a handler
        handlers = {
            "Unary": grpc.unary_unary_rpc_method_handler(self._unary),
            "Collect": grpc.stream_unary_rpc_method_handler(self._collect),
            "Chat": grpc.stream_stream_rpc_method_handler(self._chat),
        }
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=16),
                                  handlers=[grpc.method_handlers_generic_handler(SERVICE, handlers)])
        with open(cert, "rb") as c, open(key, "rb") as k:
            creds = grpc.ssl_server_credentials([(k.read(), c.read())])
        self.port = self.server.add_secure_port("127.0.0.1:0", creds)
        self.server.start()

    def _record(self, method, msg):
        with self.lock:
            self.messages.append((method, bytes(msg)))

    def _unary(self, request, context):
        with self.lock:
            self.calls.append(UNARY)
        self._record(UNARY, request)
        return b"ack:" + hashlib.sha256(request).hexdigest().encode()

    def _collect(self, request_iterator, context):
        with self.lock:
            self.calls.append(COLLECT)
        n = 0
        for msg in request_iterator:
            self._record(COLLECT, msg)
            n += 1
        return b"count:%d" % n

    def _chat(self, request_iterator, context):
        with self.lock:
            self.calls.append(CHAT)
        for msg in request_iterator:
            self._record(CHAT, msg)
            yield b"echo:" + msg

    def received(self, method=None):
        with self.lock:
            return [m for p, m in self.messages if method is None or p == method]

    def saw(self, needle):
        return any(needle in m for m in self.received())

    def wait_message(self, needle, timeout=5.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.saw(needle):
                return True
            time.sleep(0.02)
        return False

    def close(self):
        self.server.stop(0)


def grpc_channel(target_port, cafile, proxy_port=None, compression=None, host="localhost"):
    """A TLS channel to host:target_port, through the proxy when proxy_port is given
    (grpc.http_proxy: grpcio sends CONNECT host:port to it)."""
    with open(cafile, "rb") as f:
        creds = grpc.ssl_channel_credentials(root_certificates=f.read())
    opts = [("grpc.use_local_subchannel_pool", 1), ("grpc.enable_retries", 0)]
    if proxy_port is not None:
        opts += [("grpc.http_proxy", f"http://127.0.0.1:{proxy_port}"), ("grpc.enable_http_proxy", 1)]
    else:
        opts += [("grpc.enable_http_proxy", 0)]
    return grpc.secure_channel(f"{host}:{target_port}", creds, options=opts, compression=compression)


def grpc_message(msg, compressed=False):
    """One gRPC length-prefixed message: flag byte, 4-byte big-endian length, payload."""
    return bytes([1 if compressed else 0]) + struct.pack(">I", len(msg)) + msg


def grpc_headers(path):
    return [("content-type", "application/grpc"), ("te", "trailers"), ("user-agent", "egressguard-h2-test")]


# ---------------------------------------------------------------------------- h2 client
class Response:
    def __init__(self, stream_id):
        self.stream_id = stream_id
        self.status = None
        self.headers = []
        self.body = bytearray()
        self.trailers = []
        self.ended = False
        self.reset = None

    @property
    def done(self):
        return self.ended or self.reset is not None

    def header(self, name):
        for k, v in self.headers + self.trailers:
            if k == name:
                return v
        return None

    def grpc_status(self):
        v = self.header("grpc-status")
        return None if v is None else int(v)

    def grpc_message(self):
        from urllib.parse import unquote
        return unquote(self.header("grpc-message") or "")

    def __repr__(self):
        return (f"<stream {self.stream_id} status={self.status} ended={self.ended} reset={self.reset} "
                f"body={bytes(self.body[:200])!r} trailers={self.trailers}>")


class H2Client:
    """python3-h2 client on a TLS socket that negotiated h2. Streams are opened with
    request(); bodies are queued and sent as flow control allows; wait() pumps until the
    given streams are done. send_data() writes one DATA frame now (for split messages)."""

    def __init__(self, sock, authority, timeout=20.0):
        if sock.selected_alpn_protocol() != "h2":
            raise AssertionError(f"ALPN chose {sock.selected_alpn_protocol()!r}, not h2")
        self.sock = sock
        self.authority = authority
        self.timeout = timeout
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        self.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: BIG_WINDOW,
                                   h2.settings.SettingCodes.ENABLE_PUSH: 0})
        self.conn.increment_flow_control_window(BIG_WINDOW)
        self.responses = {}
        self.pending = {}  # stream id -> [memoryview, offset, end_stream]
        self.goaway = None  # (error_code, last_stream_id)
        self.eof = False
        self.remote_settings = None
        self._flush()
        end = time.monotonic() + timeout
        while self.remote_settings is None and not self.eof and time.monotonic() < end:
            self._read(0.2)
        if self.remote_settings is None:
            raise AssertionError("no SETTINGS from the peer")

    def _flush(self):
        out = self.conn.data_to_send()
        if out:
            self.sock.sendall(out)

    def request(self, method, path, body=None, headers=(), end_stream=True):
        sid = self.conn.get_next_available_stream_id()
        hdrs = [(":method", method), (":scheme", "https"), (":authority", self.authority), (":path", path)]
        hdrs += list(headers)
        if body is not None and method in ("POST", "PUT") and not any(k == "content-length" for k, _ in hdrs) \
                and end_stream:
            hdrs.append(("content-length", str(len(body))))
        self.responses[sid] = Response(sid)
        self.conn.send_headers(sid, hdrs, end_stream=body is None and end_stream)
        if body is not None:
            self.pending[sid] = [memoryview(body), 0, end_stream]
        self._pump()
        self._flush()
        return sid

    def send_data(self, sid, data, end_stream=False):
        """One DATA frame with exactly `data` (must fit the window and the frame size)."""
        self.conn.send_data(sid, data, end_stream=end_stream)
        self._flush()

    def reset(self, sid, code=CANCEL):
        self.conn.reset_stream(sid, code)
        self._flush()

    def _pump(self):
        for sid in list(self.pending):
            view, off, end = self.pending[sid]
            try:
                while off < len(view):
                    n = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size,
                            len(view) - off)
                    if n <= 0:
                        break
                    self.conn.send_data(sid, view[off:off + n].tobytes(), end_stream=end and off + n == len(view))
                    off += n
                    if len(self.conn._data_to_send) > (1 << 20):  # noqa: SLF001
                        self._flush()
                if len(view) == 0 and end:
                    self.conn.end_stream(sid)
            except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                self.pending.pop(sid)
                continue
            if off >= len(view):
                self.pending.pop(sid)
            else:
                self.pending[sid][1] = off

    def _read(self, timeout):
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(1 << 18)
        except (socket.timeout, ssl.SSLWantReadError):
            return
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError, OSError):
            self.eof = True
            return
        if not data:
            self.eof = True
            return
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError as e:
            self.eof = True
            raise AssertionError(f"the peer broke the h2 protocol: {e!r}")
        for ev in events:
            r = self.responses.get(getattr(ev, "stream_id", None))
            if isinstance(ev, h2.events.ResponseReceived):
                r.headers = list(ev.headers)
                r.status = int(dict(r.headers)[":status"])
            elif isinstance(ev, h2.events.DataReceived):
                if r is not None:
                    r.body += ev.data
                if ev.flow_controlled_length:
                    try:
                        self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    except h2.exceptions.StreamClosedError:
                        pass
            elif isinstance(ev, h2.events.TrailersReceived):
                r.trailers = list(ev.headers)
            elif isinstance(ev, h2.events.StreamEnded):
                r.ended = True
            elif isinstance(ev, h2.events.StreamReset):
                if r is not None:
                    r.reset = ev.error_code
                self.pending.pop(ev.stream_id, None)
            elif isinstance(ev, h2.events.ConnectionTerminated):
                self.goaway = (ev.error_code, ev.last_stream_id)
            elif isinstance(ev, h2.events.RemoteSettingsChanged):
                self.remote_settings = {k: v.new_value for k, v in ev.changed_settings.items()}
        self._pump()
        try:
            self._flush()
        except OSError:
            self.eof = True

    def wait(self, sids=None, timeout=None):
        """Pumps until every stream in sids (default: all) is ended or reset."""
        end = time.monotonic() + (timeout or self.timeout)
        sids = list(self.responses) if sids is None else list(sids)
        while not all(self.responses[s].done for s in sids):
            open_ = [self.responses[s] for s in sids if not self.responses[s].done]
            # After GOAWAY the streams it covers (id <= last_stream_id) may still finish.
            beyond = self.goaway is not None and any(r.stream_id > self.goaway[1] for r in open_)
            if self.eof or beyond or time.monotonic() > end:
                raise AssertionError(f"streams not done (eof={self.eof}, goaway={self.goaway}): {open_[:5]}")
            self._read(0.2)
        return [self.responses[s] for s in sids]

    def get(self, path, headers=()):
        sid = self.request("GET", path, headers=headers)
        return self.wait([sid])[0]

    def close(self):
        try:
            self.conn.close_connection()
            self._flush()
        except Exception:  # noqa: BLE001 - closing an already broken connection
            pass
        self.sock.close()


# ---------------------------------------------------------------------------- raw frames
def hpack_int(value, prefix_bits, first_byte=0):
    """HPACK integer (RFC 7541 5.1) with the high bits of the first byte given."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first_byte | value])
    out = bytearray([first_byte | limit])
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def hpack_str(s):
    b = s.encode() if isinstance(s, str) else s
    return hpack_int(len(b), 7) + b


def hpack_literal(name, value, index=False):
    """A literal header with a new name: with incremental indexing (index=True) or not."""
    return (b"\x40" if index else b"\x00") + hpack_str(name) + hpack_str(value)


def hpack_request(path, authority, method="GET"):
    """Pseudo headers by hand (static table names, values not indexed) so the block never
    touches the dynamic table: :method (GET 0x82 / POST 0x83), :scheme https, :path, :authority."""
    m = {"GET": b"\x82", "POST": b"\x83"}[method]
    return m + b"\x87" + hpack_int(4, 4) + hpack_str(path) + hpack_int(1, 4) + hpack_str(authority)


class RawH2:
    """Frames written by hand on a TLS socket that negotiated h2; frames read back parsed."""

    def __init__(self, sock, authority, ack_settings=True):
        self.sock = sock
        self.authority = authority
        self.ack_settings = ack_settings
        self.buf = b""
        self.frames = []
        self.eof = False
        self.send_failed = None
        self.sock.sendall(PREFACE + SettingsFrame(0).serialize())

    def send(self, *frames):
        data = b"".join(f if isinstance(f, (bytes, bytearray)) else f.serialize() for f in frames)
        try:
            self.sock.sendall(data)
            return True
        except (OSError, ssl.SSLError) as e:
            self.send_failed = repr(e)
            return False

    def poll(self, timeout=0.0):
        """Reads what is there (waiting up to timeout for the first bytes); returns new frames."""
        new = []
        self.sock.settimeout(timeout if timeout > 0 else 0.001)
        while not self.eof:
            try:
                data = self.sock.recv(1 << 18)
            except (socket.timeout, ssl.SSLWantReadError):
                break
            except (ConnectionResetError, BrokenPipeError, ssl.SSLError, OSError):
                self.eof = True
                break
            if not data:
                self.eof = True
                break
            self.buf += data
            self.sock.settimeout(0.001)
        while len(self.buf) >= 9:
            f, length = Frame.parse_frame_header(memoryview(self.buf[:9]))
            if len(self.buf) < 9 + length:
                break
            f.parse_body(memoryview(self.buf[9:9 + length]))
            self.buf = self.buf[9 + length:]
            new.append(f)
            if self.ack_settings and isinstance(f, SettingsFrame) and "ACK" not in f.flags:
                self.send(SettingsFrame(0, flags=["ACK"]))
        self.frames += new
        return new

    def goaway(self):
        for f in self.frames:
            if isinstance(f, GoAwayFrame):
                return f
        return None

    def resets(self):
        return {f.stream_id: f.error_code for f in self.frames if isinstance(f, RstStreamFrame)}

    def wait(self, pred, timeout=5.0):
        """Polls until pred(self) is true, the peer closed, or timeout; returns pred(self)."""
        end = time.monotonic() + timeout
        while not pred(self) and not self.eof and time.monotonic() < end:
            self.poll(0.1)
        return pred(self)

    def flood(self, make_frame, count, batch=200, stop=lambda r: r.goaway() is not None):
        """Sends count frames (make_frame(i) -> frame or bytes, or a list of them) in batches,
        reading between batches; stops early once stop(self). Returns how many were sent."""
        sent = 0
        while sent < count and not stop(self) and not self.eof:
            chunk = []
            for i in range(sent, min(count, sent + batch)):
                f = make_frame(i)
                chunk += f if isinstance(f, list) else [f]
            if not self.send(*chunk):
                break
            sent = min(count, sent + batch)
            self.poll(0)
        return sent

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# ---------------------------------------------------------------------------- proxy state
_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def scrape(admin):
    """The admin listener's /metrics as {(name, frozenset(labels)): value}."""
    with urllib.request.urlopen(f"http://{admin}/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _LINE.match(line)
        if m:
            out[(m.group(1), frozenset(_LABEL.findall(m.group(2) or "")))] = float(m.group(3))
    return out


def metric_sum(metrics, name, **labels):
    """Sum of `name` over the series whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in metrics.items() if n == name and want <= set(ls))


def rss_kib(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0
