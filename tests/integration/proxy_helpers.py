"""Fixtures for the proxy integration tests: a test PKI made with the openssl CLI,
real HTTPS/HTTP origins on loopback (Python ssl + ThreadingHTTPServer) that count the
body bytes they receive, and a running `egressguard proxy`."""
import gzip
import hashlib
import json
import os
import signal
import socket
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def sh(*args, cwd=None):
    subprocess.run(list(args), check=True, cwd=cwd, capture_output=True)


def _openssl_ca(d, name, days):
    sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
       "-keyout", os.path.join(d, name + ".key"), "-out", os.path.join(d, name + ".pem"),
       "-subj", f"/CN={name}", "-days", str(days),
       "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    os.chmod(os.path.join(d, name + ".key"), 0o600)


def _leaf(d, name, ca, san, start=None, end=None, self_signed=False):
    key = os.path.join(d, name + ".key")
    crt = os.path.join(d, name + ".pem")
    ext = os.path.join(d, name + ".ext")
    with open(ext, "w") as f:
        f.write(f"subjectAltName={san}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n"
                "extendedKeyUsage=serverAuth\n")
    if self_signed:
        sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
           "-keyout", key, "-out", crt, "-subj", f"/CN={name}", "-days", "30", "-addext", f"subjectAltName={san}")
        return key, crt
    csr = os.path.join(d, name + ".csr")
    sh("openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
       "-keyout", key, "-out", csr, "-subj", f"/CN={name}")
    if start is None:
        sh("openssl", "x509", "-req", "-in", csr, "-CA", os.path.join(d, ca + ".pem"),
           "-CAkey", os.path.join(d, ca + ".key"), "-CAcreateserial", "-days", "30",
           "-extfile", ext, "-out", crt)
    else:
        # `openssl ca` is the CLI way to set explicit validity dates (an expired leaf).
        db = os.path.join(d, "cadb-" + name)
        os.makedirs(db, exist_ok=True)
        open(os.path.join(db, "index.txt"), "w").close()
        with open(os.path.join(db, "serial"), "w") as f:
            f.write("1000\n")
        conf = os.path.join(db, "ca.cnf")
        with open(conf, "w") as f:
            f.write(f"""[ca]
default_ca = c
[c]
dir = {db}
database = {db}/index.txt
serial = {db}/serial
new_certs_dir = {db}
certificate = {os.path.join(d, ca + '.pem')}
private_key = {os.path.join(d, ca + '.key')}
default_md = sha256
policy = p
copy_extensions = none
[p]
commonName = supplied
[ext]
subjectAltName = {san}
basicConstraints = CA:FALSE
extendedKeyUsage = serverAuth
""")
        sh("openssl", "ca", "-batch", "-config", conf, "-in", csr, "-out", crt, "-startdate", start,
           "-enddate", end, "-extensions", "ext", "-notext")
    return key, crt


class Pki:
    """Cluster CA (the proxy's), the origins' test root, and origin leaves good and bad."""

    def __init__(self, d):
        self.dir = d
        _openssl_ca(d, "cluster-ca", 365)
        _openssl_ca(d, "origin-root", 365)
        _openssl_ca(d, "rogue-root", 365)
        good_san = "DNS:localhost,IP:127.0.0.1"
        self.good = _leaf(d, "good", "origin-root", good_san)
        self.expired = _leaf(d, "expired", "origin-root", good_san, start="20200101000000Z", end="20200201000000Z")
        self.self_signed = _leaf(d, "selfsigned", None, good_san, self_signed=True)
        self.wrong_host = _leaf(d, "wronghost", "origin-root", "DNS:other.example")
        self.untrusted = _leaf(d, "untrusted", "rogue-root", good_san)

    def path(self, name):
        return os.path.join(self.dir, name)


def pattern_bytes(n, seed=b"egressguard"):
    """Deterministic bytes without long digit runs (so DLP rules never fire on them)."""
    block = hashlib.sha256(seed).digest() * 2048  # 64 KiB
    out = bytearray()
    while len(out) < n:
        out += block
    return bytes(out[:n])


class OriginState:
    def __init__(self):
        self.lock = threading.Lock()
        self.body_bytes = {}  # path -> body bytes received
        self.requests = 0
        self.connections = 0

    def add_body(self, path, n):
        with self.lock:
            self.body_bytes[path] = self.body_bytes.get(path, 0) + n

    def received(self, path):
        with self.lock:
            return self.body_bytes.get(path, 0)


def make_handler(state):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self):
            super().setup()
            with state.lock:
                state.connections += 1

        def log_message(self, *args):
            pass

        def _send(self, code, body, ctype="application/octet-stream", extra=None):
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_GET(self):
            with state.lock:
                state.requests += 1
            parts = self.path.split("?")[0].strip("/").split("/")
            if parts[0] == "size":
                self._send(200, pattern_bytes(int(parts[1])))
            elif parts[0] == "chunked":
                data = pattern_bytes(int(parts[1]))
                self.send_response(200)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for i in range(0, len(data), 100000):
                    piece = data[i:i + 100000]
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.write(b"0\r\n\r\n")
            elif parts[0] == "gzip":
                self._send(200, gzip.compress(b"hello gzip " * 1000), "text/plain", {"Content-Encoding": "gzip"})
            else:
                self._send(200, b"ok\n", "text/plain")

        do_HEAD = do_GET

        def _read_body(self):
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                h = hashlib.sha256()
                total = 0
                while True:
                    line = self.rfile.readline()
                    size = int(line.split(b";")[0], 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        break
                    left = size
                    while left:
                        piece = self.rfile.read(min(left, 65536))
                        if not piece:
                            raise ConnectionError("short chunk")
                        h.update(piece)
                        total += len(piece)
                        state.add_body(self.path, len(piece))
                        left -= len(piece)
                    self.rfile.readline()
                return h.hexdigest(), total
            n = int(self.headers.get("Content-Length", "0"))
            h = hashlib.sha256()
            left = n
            while left:
                piece = self.rfile.read(min(left, 65536))
                if not piece:
                    break
                h.update(piece)
                state.add_body(self.path, len(piece))
                left -= len(piece)
            return h.hexdigest(), n - left

        def do_POST(self):
            with state.lock:
                state.requests += 1
            digest, n = self._read_body()
            self._send(200, json.dumps({"sha256": digest, "len": n}).encode(), "application/json")

        do_PUT = do_POST

    return Handler


class Origin:
    """An HTTP(S) origin on 127.0.0.1 serving in a thread."""

    def __init__(self, cert=None, key=None):
        self.state = OriginState()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(self.state))
        self.server.daemon_threads = True
        if cert:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(cert, key)
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Proxy:
    """A running `egressguard proxy`; `port` is parsed from its ready line."""

    def __init__(self, binary, pki, workdir, *extra, listen="127.0.0.1:0", workers=2):
        self.audit = os.path.join(workdir, f"audit-{time.monotonic_ns()}.jsonl")
        args = [binary, "proxy", "--listen", listen, "--ca-cert", pki.path("cluster-ca.pem"),
                "--ca-key", pki.path("cluster-ca.key"), "--upstream-ca", pki.path("origin-root.pem"),
                "--upstream-ca-only", "--workers", str(workers), "--audit-log", self.audit, *extra]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        seen = ""
        for _ in range(50):  # log lines may come first
            line = self.proc.stdout.readline()
            seen += line
            if "listening on" in line or not line:
                break
        if "listening on" not in line:
            self.proc.kill()
            raise RuntimeError("proxy did not start: " + seen + self.proc.stderr.read())
        self.port = int(line.split("listening on ")[1].split()[0].rsplit(":", 1)[1])
        # Keep draining stdout so log lines can never block the proxy on a full pipe.
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()
        threading.Thread(target=lambda: [None for _ in self.proc.stderr], daemon=True).start()

    def verdicts(self):
        with open(self.audit) as f:
            return [json.loads(l) for l in f if l.strip()]

    def wait_verdict(self, pred, timeout=5.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for v in self.verdicts():
                if pred(v):
                    return v
            time.sleep(0.05)
        raise AssertionError("no matching verdict in " + json.dumps(self.verdicts(), indent=1)[-3000:])

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return None
        return self.proc.returncode


def connect_tunnel(proxy_port, host, port, timeout=10):
    """Opens a CONNECT tunnel and returns the socket after the 200."""
    s = socket.create_connection(("127.0.0.1", proxy_port), timeout=timeout)
    s.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
    resp = b""
    while b"\r\n\r\n" not in resp:
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionError("proxy closed during CONNECT: %r" % resp)
        resp += chunk
    status = int(resp.split(b" ", 2)[1])
    return s, status, resp
