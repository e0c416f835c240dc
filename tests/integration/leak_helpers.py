"""Attacker-side helpers for test_no_leak.py: a raw TLS origin on loopback that records
every byte it receives per connection (and parses just enough HTTP/1.1 to answer), a raw
client that sends exact bytes through a CONNECT tunnel with controlled write boundaries,
generators of realistic upload bodies, and the leak and verdict checks."""
import concurrent.futures
import base64
import hashlib
import json
import socket
import ssl
import threading
import time

from proxy_helpers import connect_tunnel

# ---------------------------------------------------------------------------- values
# Each is found by the shipped pack (rules/default/) with action BLOCK.
CARD_SPACED = b"4539 1488 0343 6467"      # Visa, Luhn-valid
CARD_COMPACT = b"4539148803436467"
CARD_DASHED = b"4539-1488-0343-6467"
NOT_A_CARD = b"4539 1488 0343 6468"       # same digits, Luhn check fails: ALLOW
IBAN_CH = b"CH93 0076 2011 6238 5295 7"
IBAN_DE = b"DE89 3704 0044 0532 0130 00"
BULK_THRESHOLD = 50                       # rules/default/pack.yaml min_records (records of people)


def pem_private_key(path):
    """The PEM block of a real private key (the Pki writes PKCS#8 EC keys)."""
    with open(path, "rb") as f:
        pem = f.read()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----\n") and pem.rstrip().endswith(b"-----END PRIVATE KEY-----")
    return pem.rstrip(b"\n") + b"\n"


# ---------------------------------------------------------------------------- bodies
_WORDS = [b"alpha", b"bravo", b"kestrel", b"harbour", b"granite", b"willow", b"orbit", b"lantern", b"meadow",
          b"quartz", b"tundra", b"saffron", b"falcon", b"cobalt", b"juniper", b"ember", b"glacier", b"pepper"]


_UNIT = 1 << 18  # generated text repeats after 256 KiB: a 64 MiB body is built in milliseconds


def _repeat(unit_fn, n, seed):
    """The parts (to join once) of at least n bytes of whole lines of unit_fn's text."""
    unit = _unit(unit_fn, seed)
    if n <= len(unit):
        return [unit_fn(n, seed)]
    reps, rest = divmod(n, len(unit))
    cut = unit.find(b"\n", rest) + 1 if rest else 0
    return [unit] * reps + [unit[:cut]]


_units = {}


def _unit(unit_fn, seed):
    key = (unit_fn.__name__, seed)
    if key not in _units:
        _units[key] = unit_fn(_UNIT, seed)
    return _units[key]


def _json_lines(n, seed):
    out = bytearray()
    i = seed * 1000003
    while len(out) < n:
        w1 = _WORDS[i % len(_WORDS)]
        w2 = _WORDS[(i * 7 + 3) % len(_WORDS)]
        out += (b'{"id":"evt-%06d","kind":"%s","actor":"svc-%s","status":"ok","amount":"%d.%02d",'
                b'"note":"%s %s batch %d"},\n' % (i % 1000000, w1, w2, i % 9973, i % 100, w2, w1, i % 977))
        i += 1
    return bytes(out)


def json_records(n, seed=0):
    """At least n bytes of a JSON array of event records (no digit runs longer than six,
    no addresses): what a telemetry or export upload looks like. Returns the text without
    its closing bracket so a tail can be appended."""
    return b"".join(json_record_parts(n, seed))


def json_record_parts(n, seed=0):
    return [b'{"source":"ledger-sync","records":[\n'] + _repeat(_json_lines, n, seed)


def _log_lines(n, seed):
    out = bytearray()
    i = seed * 7919
    while len(out) < n:
        w1 = _WORDS[i % len(_WORDS)]
        w2 = _WORDS[(i * 5 + 1) % len(_WORDS)]
        out += (b"2026-11-%02dT%02d:%02d:%02d.%03dZ INFO worker-%d %s: processed %s job %d in %d ms\n"
                % (1 + i % 28, i % 24, i % 60, (i * 7) % 60, i % 1000, i % 8, w1, w2, i % 99991, i % 977))
        i += 1
    return bytes(out)


def log_lines(n, seed=0):
    """At least n bytes of application log lines (text/plain), whole lines."""
    return b"".join(_repeat(_log_lines, n, seed))


def _b64_lines(n, seed):
    raw = hashlib.sha256(b"attachment%d" % seed).digest()
    blob = bytearray()
    while len(blob) < n * 3 // 4 + 64:
        raw = hashlib.sha256(raw).digest()
        blob += raw
    text = base64.b64encode(bytes(blob))
    usable = len(text) - len(text) % 76
    return b"".join(text[i:i + 76] + b"\n" for i in range(0, usable, 76))


def base64_attachment(n, seed=0):
    """About n bytes (whole 77-byte lines) of a MIME-style base64 attachment body."""
    return b"".join(_b64_parts(n, seed))


def _b64_parts(n, seed=0):
    return _repeat(_b64_lines, max(77, n - n % 77), seed)


def csv_table(rows=200):
    """A customer export: a CSV header naming PII columns and `rows` rows of distinct names,
    e-mail addresses and phone numbers (no cards, no IBANs): only bulk_pii can block it."""
    first = [b"Anna", b"Luca", b"Noah", b"Mia", b"Elias", b"Lea", b"Leon", b"Emma", b"Levin", b"Lina"]
    last = [b"Meier", b"Keller", b"Brunner", b"Frei", b"Moser", b"Huber", b"Graf", b"Baumann", b"Schmid", b"Wyss"]
    domains = [b"bluewin.ch", b"gmx.ch", b"protonmail.com", b"hispeed.ch", b"sunrise.ch"]
    out = bytearray(b"name,email,phone\n")
    emails = []
    for i in range(rows):
        f, l = first[i % 10], last[(i // 10) % 10]
        email = b"%s.%s%d@%s" % (f.lower(), l.lower(), i, domains[i % len(domains)])
        emails.append(email)
        out += b"%s %s,%s,+41 44 %03d %02d %02d\n" % (f, l, email, 200 + i % 700, 10 + i % 89, 10 + (i * 3) % 89)
    return bytes(out), emails


def body_with_value(kind, size, value, seed=0):
    """(body, value_offset, content_type): about `size` bytes of realistic filler, then
    `value` at the very end with at most a few closing bytes after it. Built with one join
    (a 64 MiB body is one allocation)."""
    n = max(0, size - len(value) - 80)
    if kind == "json":
        pre, post = b'{"id":"pay-1","payment":{"holder":"customer","card":"', b'"}}]}\n'
        parts = json_record_parts(n, seed)
        ctype = "application/json"
    elif kind == "json-end":  # the value is the very last bytes of the body
        pre, post = b'{"id":"pay-1","card_number":', b""
        parts = json_record_parts(n, seed)
        ctype = "text/plain"
    elif kind == "log":
        pre, post = b"2026-11-30T23:59:59.000Z WARN billing: payee iban ", b"\n"
        parts = _repeat(_log_lines, n, seed)
        ctype = "text/plain"
    elif kind == "attachment":  # base64 attachment text, then a key block pasted under it
        pre, post = b"\n", b""
        parts = _b64_parts(n, seed)
        ctype = "text/plain"
    else:
        raise ValueError(kind)
    for p in set(map(id, parts)):
        part = next(x for x in parts if id(x) == p)
        assert_filler_clean(part, value)
    body = b"".join(parts + [pre, value, post])
    off = len(body) - len(post) - len(value)
    assert body[off:off + len(value)] == value
    return body, off, ctype


def assert_filler_clean(filler, value):
    """The filler must not contain any prefix of the value that the leak checks look for."""
    assert value[:8] not in filler and value[: max(1, len(value) // 2)] not in filler


# ---------------------------------------------------------------------------- framing
def request_head(method, path, host, headers=(), content_length=None, chunked=False):
    lines = [b"%s %s HTTP/1.1" % (method.encode(), path.encode()), b"Host: %s" % host.encode()]
    lines += [h.encode() if isinstance(h, str) else h for h in headers]
    if content_length is not None:
        lines.append(b"Content-Length: %d" % content_length)
    if chunked:
        lines.append(b"Transfer-Encoding: chunked")
    return b"\r\n".join(lines) + b"\r\n\r\n"


def chunk(data, ext=b""):
    return b"%x%s\r\n%s\r\n" % (len(data), ext, data)


def chunks(data, size=16384, ext=b""):
    return b"".join(chunk_pieces(data, size, ext))


def chunk_pieces(data, size=16384, ext=b""):
    """The chunks of data as pieces to send back to back (views, no copy of the data)."""
    mv = memoryview(data)
    out = []
    for i in range(0, len(data), size):
        piece = mv[i:i + size]
        out += [b"%x%s\r\n" % (len(piece), ext), piece, b"\r\n"]
    return out


TERMINATOR = b"0\r\n\r\n"


def upload_writes(framing, path, host, body, split, ctype="application/octet-stream", chunk_size=16384):
    """The client's writes for an upload of `body` whose last two writes meet at body
    offset `split`. A write is bytes or a list of pieces sent back to back. framing:
      cl            Content-Length; writes: head+body[:split] | body[split:]
      chunked       body[:split] in chunks (the last one ends at split) | the chunk of
                    body[split:] and the terminator: the value split across the last two chunks
      chunked-late  as chunked, but the terminator comes in a third, later write
      chunked-mid   body[:split] and body[split:] in the same final chunk, the write
                    boundary inside its data; the terminator in a later write"""
    mv = memoryview(body)
    hdrs = ["Content-Type: " + ctype, "User-Agent: leak-probe/1"]
    if framing == "cl":
        head = request_head("POST", path, host, hdrs, content_length=len(body))
        return [[head, mv[:split]], mv[split:]]
    head = request_head("POST", path, host, hdrs, chunked=True)
    if framing in ("chunked", "chunked-late"):
        first = [head] + chunk_pieces(mv[:split], chunk_size)
        second = chunk(body[split:]) if split < len(body) else b""
        if framing == "chunked":
            return [first, second + TERMINATOR]
        return [first, second, TERMINATOR] if second else [first, TERMINATOR]
    if framing == "chunked-mid":
        tail_start = max(0, len(body) - max(4096, len(body) - split + 64))
        tail_start = min(tail_start, split)
        size_line = b"%x\r\n" % (len(body) - tail_start)
        first = [head] + chunk_pieces(mv[:tail_start], chunk_size) + [size_line, mv[tail_start:split]]
        return [first, [mv[split:], b"\r\n"], TERMINATOR]
    raise ValueError(framing)


# ---------------------------------------------------------------------------- origin
class OriginRequest:
    def __init__(self, conn, method, target, version, headers, head_raw):
        self._conn = conn
        self.method, self.target, self.version = method, target, version
        self.headers = headers            # [(name lower, value)] as received
        self.head_raw = head_raw
        self.spans = []                    # where the de-framed body lies in the connection's bytes
        self.chunk_lines = []              # raw chunk-size lines (chunked)
        self.trailers = b""                # raw trailer section (chunked)
        self.complete = False

    @property
    def body(self):
        """The de-framed body bytes received so far."""
        with self._conn.lock:
            mv = memoryview(self._conn.data)
            try:
                return b"".join(mv[s:e] for s, e in self.spans)
            finally:
                mv.release()

    @property
    def body_len(self):
        return sum(e - s for s, e in self.spans)

    def body_find(self, needle):
        """Whether needle is in the de-framed body, without joining it."""
        with self._conn.lock:
            d = self._conn.data
            for idx, (s, e) in enumerate(self.spans):
                if d.find(needle, s, e) >= 0:
                    return True
                if idx + 1 < len(self.spans):  # across a chunk boundary
                    s2, e2 = self.spans[idx + 1]
                    k = len(needle) - 1
                    if needle in bytes(d[max(s, e - k):e]) + bytes(d[s2:min(e2, s2 + k)]):
                        return True
            return False

    def body_digest(self):
        h = hashlib.sha256()
        with self._conn.lock:
            mv = memoryview(self._conn.data)
            try:
                for s, e in self.spans:
                    h.update(mv[s:e])
            finally:
                mv.release()
        return h.hexdigest()

    def header(self, name):
        for k, v in self.headers:
            if k == name:
                return v
        return None


class OriginConn:
    """One connection to the origin: every byte after the handshake, and the requests
    parsed out of them (leniently, like a forgiving server would). Bodies are kept as
    spans of `data`, so a 64 MiB upload is stored once."""

    def __init__(self):
        self.data = bytearray()
        self.lock = threading.Lock()
        self.requests = []
        self.end = None            # "eof", "reset", "error: ..."
        self.done = threading.Event()
        self.unparsed = False      # bytes that are not an HTTP request
        self._pos = 0
        self._state = "head"
        self._left = 0

    def _take(self, req):
        take = min(self._left, len(self.data) - self._pos)
        if take:
            if req.spans and req.spans[-1][1] == self._pos:
                req.spans[-1] = (req.spans[-1][0], self._pos + take)
            else:
                req.spans.append((self._pos, self._pos + take))
            self._pos += take
            self._left -= take
        return self._left == 0

    # -- parser over self.data from self._pos: called with the lock held
    def _parse(self, respond):
        d = self.data
        while not self.unparsed:
            if self._state == "head":
                p = self._pos
                while p < len(d) and d[p] in (10, 13):
                    p += 1
                self._pos = p
                end = d.find(b"\r\n\r\n", p)
                if end < 0:
                    if len(d) - p > 65536:
                        self.unparsed = True
                    return
                raw = bytes(d[p:end + 4])
                self._pos = end + 4
                lines = raw[:-4].split(b"\r\n")
                parts = lines[0].split()
                if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
                    self.unparsed = True
                    return
                headers = []
                for line in lines[1:]:
                    name, _, value = line.partition(b":")
                    headers.append((name.strip().lower().decode("latin-1"), value.strip()))
                req = OriginRequest(self, parts[0].decode("latin-1"), parts[1].decode("latin-1"),
                                    parts[2].decode("latin-1"), headers, raw)
                self.requests.append(req)
                if b"chunked" in (req.header("transfer-encoding") or b"").lower():
                    self._state = "size"
                else:
                    try:
                        self._left = int(req.header("content-length") or b"0")
                    except ValueError:
                        self.unparsed = True
                        return
                    self._state = "body"
            elif self._state == "body":
                if not self._take(self.requests[-1]):
                    return
                self._finish(respond)
            elif self._state == "size":
                end = d.find(b"\r\n", self._pos)
                if end < 0:
                    if len(d) - self._pos > 8192:
                        self.unparsed = True
                    return
                line = bytes(d[self._pos:end])
                self._pos = end + 2
                self.requests[-1].chunk_lines.append(line)
                try:
                    size = int(line.split(b";")[0].strip(), 16)
                except ValueError:
                    self.unparsed = True
                    return
                self._left = size
                self._state = "trailers" if size == 0 else "data"
            elif self._state == "data":
                if not self._take(self.requests[-1]):
                    return
                self._state = "crlf"
            elif self._state == "crlf":
                if len(d) - self._pos < 2:
                    return
                if d[self._pos:self._pos + 2] != b"\r\n":
                    self.unparsed = True
                    return
                self._pos += 2
                self._state = "size"
            elif self._state == "trailers":
                if len(d) - self._pos < 2:
                    return
                if d[self._pos:self._pos + 2] == b"\r\n":
                    self._pos += 2
                    self._finish(respond)
                    continue
                end = d.find(b"\r\n\r\n", self._pos)
                if end < 0:
                    return
                self.requests[-1].trailers = bytes(d[self._pos:end + 2])
                self._pos = end + 4
                self._finish(respond)

    def _finish(self, respond):
        self.requests[-1].complete = True
        self._state = "head"
        respond()


class RawOrigin:
    """A TLS origin on 127.0.0.1 (certificate from the test Pki) that records every byte it
    receives per connection and answers each complete HTTP/1.1 request with 200."""

    RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\norigin-ok"

    def __init__(self, cert, key):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.lock = threading.Lock()
        self.closed = False
        self._threads = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                s, _ = self.sock.accept()
            except OSError:
                return
            conn = OriginConn()
            with self.lock:
                self.conns.append(conn)
            t = threading.Thread(target=self._serve, args=(s, conn), daemon=True)
            t.start()

    def _serve(self, s, conn):
        tls = None
        try:
            s.settimeout(30)
            tls = self.ctx.wrap_socket(s, server_side=True)
            pending = []

            def respond():
                pending.append(self.RESPONSE)

            while True:
                data = tls.recv(1 << 20)
                if not data:
                    conn.end = "eof"
                    break
                with conn.lock:
                    conn.data += data
                    conn._parse(respond)
                while pending:
                    tls.sendall(pending.pop(0))
        except (ConnectionResetError, BrokenPipeError):
            conn.end = "reset"
        except ssl.SSLError as e:
            # A TCP reset or close without close_notify mid-stream shows up as an SSL error.
            conn.end = "reset" if "EOF" in str(e) or "reset" in str(e).lower() else "error: %s" % e
        except OSError as e:
            conn.end = "error: %s" % e
        finally:
            if conn.end is None:
                conn.end = "error"
            try:
                (tls or s).close()
            except OSError:
                pass
            conn.done.set()

    # -- what the origin saw
    def connections(self):
        with self.lock:
            return list(self.conns)

    def raw_find(self, needle):
        """Whether needle is in what any connection received (framing included)."""
        for c in self.connections():
            with c.lock:
                if c.data.find(needle) >= 0:
                    return True
        return False

    def raw(self):
        out = bytearray()
        for c in self.connections():
            with c.lock:
                out += c.data
        return bytes(out)

    def requests(self):
        out = []
        for c in self.connections():
            with c.lock:
                out += c.requests
        return out

    def completed(self):
        return [r for r in self.requests() if r.complete]

    def wait_closed(self, timeout=5.0):
        """True when every connection the proxy opened has ended (reset or closed)."""
        end = time.monotonic() + timeout
        for c in self.connections():
            if not c.done.wait(max(0.0, end - time.monotonic())):
                return False
        return True

    def received(self):
        total = 0
        for c in self.connections():
            with c.lock:
                total += len(c.data)
        return total

    def wait_quiet(self, quiet=0.3, cap=20.0):
        """Returns once bytes arrived and then none for `quiet` seconds (at most `cap`):
        what the proxy was going to forward of the writes so far has arrived. For writes
        past the hold limit, which the proxy must stream. Synchronization, not a check."""
        end = time.monotonic() + cap
        last = -1
        while time.monotonic() < end:
            n = self.received()
            if n == last and n > 0:
                return
            last = n
            time.sleep(quiet)

    def wait_for(self, pred, timeout=5.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if pred():
                return True
            time.sleep(0.02)
        return pred()

    def release(self):
        """Frees the recorded bytes of connections that ended (after a case was checked)."""
        for c in self.connections():
            if c.done.is_set():
                with c.lock:
                    c.data = bytearray()
                    c.requests = []
                    c.unparsed = True

    def close(self):
        self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass


# ---------------------------------------------------------------------------- client
class Answer:
    def __init__(self, status, head, body, send_error):
        self.status, self.head, self.body, self.send_error = status, head, body, send_error

    def __repr__(self):
        return "Answer(status=%r, head=%r, body=%r, send_error=%r)" % (self.status, self.head[:200], self.body[:300],
                                                                       self.send_error)


def open_tls(proxy_port, cafile, host, port, timeout=30):
    """CONNECT host:port through the proxy, then TLS to the proxy's minted leaf (verified
    against the cluster CA)."""
    s, status, resp = connect_tunnel(proxy_port, host, port, timeout=timeout)
    assert status == 200, resp
    ctx = ssl.create_default_context(cafile=cafile)
    tls = ctx.wrap_socket(s, server_hostname=host)
    tls.settimeout(timeout)
    return tls


def send_writes(tls, writes, gap=0.03, settle=None):
    """Sends each write with its own sendall, pausing `gap` seconds between writes so each
    arrives in a separate read at the proxy (or, with `settle`, calling it: e.g. waiting
    until the origin went quiet, after a write of many MiB). Returns the error that stopped
    sending, if any (a proxy may answer and close before the client is done)."""
    buf = bytearray()
    for i, w in enumerate(writes):
        if i:
            if settle is not None:
                settle()
            else:
                time.sleep(gap)
        pieces = w if isinstance(w, list) else [w]
        try:
            for piece in pieces:
                if len(piece) >= 65536:  # large views go out as they are, small pieces coalesce
                    if buf:
                        tls.sendall(buf)
                        del buf[:]
                    tls.sendall(piece)
                    continue
                buf += piece
            if buf:
                tls.sendall(buf)
                del buf[:]
        except (OSError, ssl.SSLError) as e:
            return repr(e)
    return None


def read_answer(tls, send_error=None, timeout=30):
    """Reads one response (status line, head, Content-Length body or to EOF)."""
    tls.settimeout(timeout)
    buf = b""
    try:
        while b"\r\n\r\n" not in buf:
            d = tls.recv(65536)
            if not d:
                break
            buf += d
    except (OSError, ssl.SSLError):
        pass
    head, sep, body = buf.partition(b"\r\n\r\n")
    status = None
    if head.startswith(b"HTTP/1.1 ") and len(head) >= 12:
        try:
            status = int(head[9:12])
        except ValueError:
            status = None
    if sep:
        n = None
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                n = int(v.strip())
        try:
            while (n is None or len(body) < n):
                d = tls.recv(65536)
                if not d:
                    break
                body += d
        except (OSError, ssl.SSLError):
            pass
    return Answer(status, head, body, send_error)


def close_tls(tls):
    """Ends the client's side: close_notify, then the TCP write side, then the socket."""
    try:
        tls.settimeout(0.3)
        raw = tls.unwrap()
    except (OSError, ssl.SSLError, ValueError):
        raw = None
    try:
        (raw or tls).shutdown(socket.SHUT_WR)
    except OSError:
        pass
    return raw


def exchange(proxy, cafile, origin, writes, gap=0.03, host="127.0.0.1", timeout=60):
    """One raw request through the proxy: returns the proxy's Answer. The client socket is
    closed afterwards."""
    tls = open_tls(proxy.port, cafile, host, origin.port, timeout=timeout)
    try:
        err = send_writes(tls, writes, gap)
        return read_answer(tls, err, timeout=timeout)
    finally:
        try:
            tls.close()
        except OSError:
            pass


# ---------------------------------------------------------------------------- checks
def leaks(origin, value):
    """What of `value` reached the origin (any connection, framing included, and each
    de-framed body, since a re-framing proxy may cut the value with its own chunk
    boundaries): a list of findings, empty when nothing did."""
    reqs = origin.requests()

    def found(needle):
        return origin.raw_find(needle) or any(r.body_find(needle) for r in reqs)

    if found(value):
        return ["the whole value"]
    half = value[: max(1, len(value) // 2)]
    if found(half):
        return ["its first half %r" % half]
    if len(value) >= 8 and found(value[:8]):
        return ["its 8-byte prefix %r" % value[:8]]
    return []


def body_overrun(origin, body, value_off):
    """The strict check: each request body the origin received must be a prefix of
    body[:value_off] (not one byte of the value, nor anything after it). Returns a
    description of the first violation, or None."""
    for r in origin.requests():
        n = r.body_len
        if n > value_off:
            got = bytes(r.body[value_off:value_off + 24])
            return "origin got %d body bytes, the value starts at %d (got %r...)" % (n, value_off, got)
        if r.body_digest() != hashlib.sha256(memoryview(body)[:n]).hexdigest():
            return "origin body differs from the sent body within the first %d bytes" % n
    return None


def at_tokens(origin):
    """Every e-mail-like token (text between separators around an '@') the origin got, in
    its raw bytes and in each de-framed body (a proxy's chunk boundary may cut one)."""
    found = set()

    def scan(b):
        at = b.find(b"@")
        while at >= 0:
            start = max(b.rfind(sep, max(0, at - 200), at) for sep in (b",", b"\n", b" ", b"\r")) + 1
            ends = [e for e in (b.find(sep, at, at + 200) for sep in (b",", b"\n", b" ", b"\r")) if e >= 0]
            end = min(ends) if ends else min(len(b), at + 200)
            found.add(bytes(b[start:end]))
            at = b.find(b"@", at + 1)

    for c in origin.connections():
        with c.lock:
            scan(c.data)
    for r in origin.requests():
        if len(r.spans) > 1:
            scan(r.body)
    return found


class AuditLog:
    """A proxy's --audit-log, read incrementally (the sweeps ask it hundreds of times)."""

    def __init__(self, path):
        self.path = path
        self.items = []
        self._pos = 0
        self._partial = b""
        self._lock = threading.Lock()

    def refresh(self):
        with self._lock:
            try:
                with open(self.path, "rb") as f:
                    f.seek(self._pos)
                    data = f.read()
            except FileNotFoundError:
                return list(self.items)
            self._pos += len(data)
            lines = (self._partial + data).split(b"\n")
            self._partial = lines.pop()
            self.items += [json.loads(line) for line in lines if line.strip()]
            return list(self.items)

    def count(self):
        return len(self.refresh())

    def wait(self, port, since=0, pred=lambda v: True, timeout=10.0):
        """The verdicts for `port` written after line `since` that satisfy pred, waiting up
        to `timeout` for the first. (An origin's port can be reused once it is closed; the
        line mark taken when it was opened keeps an earlier case's verdicts out.)"""
        end = time.monotonic() + timeout
        while True:
            vs = [v for v in self.refresh()[since:] if int(v.get("port", 0) or 0) == port and pred(v)]
            if vs or time.monotonic() > end:
                return vs
            time.sleep(0.03)


def untruthful_verdicts(verdicts, origin, value=None):
    """Verdicts that claim an enforced block while the origin got the value or a complete
    request (the record would claim a block that did not happen). `value` is the sensitive
    bytes, or a function origin -> list of leak findings."""
    bad = []
    leaked = None
    if callable(value):
        leaked = value(origin)
    elif value is not None:
        leaked = leaks(origin, value)
    for v in verdicts:
        if v.get("action") == "BLOCK" and v.get("enforced"):
            if leaked:
                bad.append(("the value reached the origin", v.get("reason")))
            if origin.completed():
                bad.append(("origin got a complete request", v.get("reason")))
    return bad


def out_before_block(v):
    return int(v.get("bytes_out_before_block", 0) or 0)


def dump(obj):
    return json.dumps(obj, indent=1, default=str)[-2500:]


def sweep(cases, fn, workers=4):
    """Runs fn(case) for each case on a few threads; returns {case: problems} of failures."""
    bad = {}
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for case, problems in zip(cases, pool.map(fn, cases)):
            if problems:
                bad[case] = problems
    return bad


def summary(bad, total):
    """One assertion message for a sweep: how many cases broke the contract, which leaked."""
    leaked = [c for c, ps in bad.items() if any(p.startswith("LEAK") for p in ps)]
    lines = ["%d of %d cases broke the contract; the value leaked in %s" % (len(bad), total, leaked or "none")]
    for case, problems in list(bad.items())[:10]:
        lines.append("  %r: %s" % (case, "; ".join(problems)))
    return "\n".join(lines)
