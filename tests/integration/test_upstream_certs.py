"""Upstream certificates are checked as strictly as a browser checks them: real binary,
real TLS, loopback origins with certificates made by the openssl CLI.

Refused: a leaf whose name is only in the subject CN, a CA certificate as leaf, a leaf
whose key usage or extended key usage does not allow TLS server use. Accepted: a
SAN-only leaf, a leaf behind an intermediate, an IP SAN reached by IP. A refused origin
never receives a byte after the handshake, and a client that verifies the proxy's
certificate still completes its handshake and reads the 502 page that says why."""
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading

import pytest

from proxy_helpers import Pki, Proxy, connect_tunnel, sh


def _issue(d, name, subj, ext_lines, ca="origin-root"):
    """A P-256 leaf (or intermediate) signed by `ca`, carrying exactly `ext_lines`."""
    key, csr, crt, ext = (os.path.join(d, name + s) for s in (".key", ".csr", ".pem", ".ext"))
    with open(ext, "w") as f:
        f.write("\n".join(ext_lines) + "\n")
    sh("openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
       "-keyout", key, "-out", csr, "-subj", subj)
    sh("openssl", "x509", "-req", "-in", csr, "-CA", os.path.join(d, ca + ".pem"), "-CAkey",
       os.path.join(d, ca + ".key"), "-CAcreateserial", "-days", "30", "-extfile", ext, "-out", crt)
    return crt, key


SERVER = ["basicConstraints=critical,CA:FALSE", "keyUsage=critical,digitalSignature",
          "extendedKeyUsage=serverAuth"]


class RawTlsOrigin:
    """A TLS origin on 127.0.0.1 that records every byte it receives after each handshake,
    and answers a complete request head with a small 200 (the controls need one)."""

    def __init__(self, cert, key):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.handshakes = 0
        self.received = b""
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn):
        conn.settimeout(10)
        try:
            with self.ctx.wrap_socket(conn, server_side=True) as tls:
                with self.lock:
                    self.handshakes += 1
                data = b""
                while True:
                    chunk = tls.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                    with self.lock:
                        self.received += chunk
                    if b"\r\n\r\n" in data:
                        tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")
                        return
        except (OSError, ssl.SSLError):
            return  # the proxy hanging up after a refused handshake lands here

    def close(self):
        self.sock.close()


@pytest.fixture(scope="module")
def env(egressguard_bin):
    d = tempfile.mkdtemp(prefix="egressguard-certs-")
    pki = Pki(d)
    san = "subjectAltName=DNS:localhost"
    intermediate = _issue(d, "intermediate", "/CN=origin-intermediate",
                          ["basicConstraints=critical,CA:TRUE,pathlen:0", "keyUsage=critical,keyCertSign,cRLSign"])
    behind = _issue(d, "behind-intermediate", "/CN=localhost", [san, *SERVER], ca="intermediate")
    with open(os.path.join(d, "behind-chain.pem"), "w") as out:
        for part in (behind[0], intermediate[0]):  # leaf first, then the intermediate
            with open(part) as f:
                out.write(f.read())
    certs = {
        # Refused.
        "cn-only": _issue(d, "cn-only", "/CN=localhost", SERVER),
        "ca-leaf": _issue(d, "ca-leaf", "/CN=localhost", [san, "basicConstraints=critical,CA:TRUE"]),
        "ku-certsign": _issue(d, "ku-certsign", "/CN=localhost",
                              [san, "basicConstraints=CA:FALSE", "keyUsage=critical,keyCertSign"]),
        # An EC key can only sign: keyEncipherment alone does not cover a TLS 1.3 handshake.
        "ku-encipher": _issue(d, "ku-encipher", "/CN=localhost",
                              [san, "basicConstraints=CA:FALSE", "keyUsage=critical,keyEncipherment"]),
        "eku-client": _issue(d, "eku-client", "/CN=localhost", [san, "extendedKeyUsage=clientAuth"]),
        "wrong-name": _issue(d, "wrong-name", "/CN=localhost", ["subjectAltName=DNS:other.example", *SERVER]),
        "ip-mismatch": _issue(d, "ip-mismatch", "/CN=127.0.0.1", ["subjectAltName=IP:127.0.0.2", *SERVER]),
        # Accepted.
        "san-only": _issue(d, "san-only", "/O=egressguard test", [san, *SERVER]),
        "unrelated-cn": _issue(d, "unrelated-cn", "/CN=unrelated.example", [san, *SERVER]),
        "behind-intermediate": (os.path.join(d, "behind-chain.pem"), behind[1]),
        "ip-san": _issue(d, "ip-san", "/O=egressguard test", ["subjectAltName=IP:127.0.0.1", *SERVER]),
        "good": (pki.good[1], pki.good[0]),
        # The helpers' bad origins (expired, self-signed, untrusted root).
        "expired": (pki.expired[1], pki.expired[0]),
        "self-signed": (pki.self_signed[1], pki.self_signed[0]),
        "untrusted": (pki.untrusted[1], pki.untrusted[0]),
    }
    origins = {name: RawTlsOrigin(*pair) for name, pair in certs.items()}
    proxy = Proxy(egressguard_bin, pki, d, "--mode", "enforce", "--allow", "localhost", "--allow", "127.0.0.1",
                  "--header-timeout-ms", "1500")
    yield {"pki": pki, "origins": origins, "proxy": proxy, "dir": d}
    proxy.stop()
    for o in origins.values():
        o.close()
    shutil.rmtree(d, ignore_errors=True)


def fetch(env, host, origin, path):
    """GET `path` through the proxy to `origin`, as `host`, with a client that verifies the
    proxy's certificate (the cluster CA its only root, hostname checked). Returns the
    status, the body and the certificate the proxy presented (decoded)."""
    s, status, _ = connect_tunnel(env["proxy"].port, host, origin.port)
    assert status == 200
    ctx = ssl.create_default_context(cafile=env["pki"].path("cluster-ca.pem"))
    assert ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED
    with ctx.wrap_socket(s, server_hostname=host) as tls:
        cert = tls.getpeercert()
        tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        # Read by Content-Length: the proxy waits for the client to go after a refusal page.
        data = b""
        while True:
            head, sep, body = data.partition(b"\r\n\r\n")
            if sep and len(body) >= content_length(head):
                break
            chunk = tls.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed before a full response: %r" % data)
            data += chunk
    return int(head.split(b" ", 2)[1]), body, cert


def content_length(head):
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    raise AssertionError("no Content-Length in %r" % head)


def sans(cert):
    return sorted(cert.get("subjectAltName", ()))


@pytest.mark.parametrize("name,host,why", [
    ("cn-only", "localhost", "hostname mismatch"),
    ("ca-leaf", "localhost", "leaf is a CA certificate"),
    ("ku-certsign", "localhost", "certificate purpose"),  # OpenSSL's TLS-server purpose check
    ("ku-encipher", "localhost", "leaf key usage does not allow TLS server authentication"),
    ("eku-client", "localhost", "certificate purpose"),  # OpenSSL's TLS-server purpose check
    ("wrong-name", "localhost", "hostname mismatch"),
    ("ip-mismatch", "127.0.0.1", "IP address mismatch"),
    ("expired", "localhost", "expired"),
    ("self-signed", "localhost", "self-signed"),
    ("untrusted", "localhost", "issuer certificate"),
])
def test_bad_origin_is_refused_with_a_verifiable_502(env, name, host, why):
    origin = env["origins"][name]
    status, body, cert = fetch(env, host, origin, f"/refused-{name}")
    # The verifying client completed its handshake: the page's leaf names what it asked for.
    assert status == 502, body
    assert b"certificate" in body and why.encode() in body, body
    assert sans(cert) == [("IP Address" if host[0].isdigit() else "DNS", host)]
    v = env["proxy"].wait_verdict(lambda v: v.get("path") == f"/refused-{name}")
    assert v["action"] == "BLOCK" and v["reason"].startswith("upstream_cert_invalid"), v
    assert why in v["reason"], v
    # The proxy did shake hands with the origin, then sent it nothing at all.
    assert origin.handshakes >= 1
    assert origin.received == b""


@pytest.mark.parametrize("name,host", [
    ("san-only", "localhost"),
    ("unrelated-cn", "localhost"),
    ("behind-intermediate", "localhost"),
    ("ip-san", "127.0.0.1"),
])
def test_browser_valid_origin_passes(env, name, host):
    origin = env["origins"][name]
    status, body, _ = fetch(env, host, origin, f"/allowed-{name}")
    assert (status, body) == (200, b"ok\n")
    assert f"GET /allowed-{name} HTTP/1.1".encode() in origin.received
    env["proxy"].wait_verdict(lambda v: v.get("path") == f"/allowed-{name}" and v["action"] == "ALLOW")


def test_refusal_leaf_never_stands_in_for_a_good_origin(env):
    # Refuse a bad origin for "localhost" first, then reach a good one by the same name: the
    # good origin's leaf is minted from its own certificate (its names: DNS and IP), the
    # refusal page's from the requested name alone. The cache keeps them apart both ways.
    for _ in range(2):
        status, _, refused = fetch(env, "localhost", env["origins"]["wrong-name"], "/cache-bad")
        assert status == 502 and sans(refused) == [("DNS", "localhost")]
        status, _, good = fetch(env, "localhost", env["origins"]["good"], "/cache-good")
        assert status == 200 and sans(good) == [("DNS", "localhost"), ("IP Address", "127.0.0.1")]


def test_curl_verifying_the_proxy_reads_why(env):
    origin = env["origins"]["wrong-name"]
    r = subprocess.run(["curl", "-sS", "--proxy", f"http://127.0.0.1:{env['proxy'].port}", "--cacert",
                        env["pki"].path("cluster-ca.pem"), "-o", "-", "-w", "\n%{http_code}",
                        f"https://localhost:{origin.port}/refused-curl"], capture_output=True, timeout=60)
    body, _, code = r.stdout.rpartition(b"\n")
    assert r.returncode == 0, r.stderr
    assert code == b"502" and b"hostname mismatch" in body
    assert origin.received == b""
