"""HTTP/2 and gRPC through the proxy, end to end: the real binary (enforce and monitor
mode, the shipped rule pack, default proxy.h2 limits), real h2 origins on loopback (a
python3-h2 origin that records what it gets, nghttpd), an HTTP/1.1-only origin, a grpcio
server on TLS, and real clients through CONNECT: curl --http2, grpcio (grpc.http_proxy),
a python3-h2 client and a raw-frame client (hyperframe, hand-made HPACK) for the attacks.

What must hold: ALPN is mirrored (h2 end to end when the origin speaks it, a working
HTTP/1.1 exchange when it does not); transfers are byte-exact; each stream is one verdict
with protocol "h2" and its client stream id; in enforce mode a card in a body, a header or
the :path is answered 403 (gRPC: grpc-status 7 naming the rule, never the digits) and the
origin never gets it, while the other streams of the connection carry on; gRPC messages are
scanned one by one (split across DATA frames, gzip/deflate) and earlier clean messages of a
streaming call pass; the known h2 attacks end in GOAWAY(ENHANCE_YOUR_CALM), an `h2_abuse:`
verdict and a metric, with bounded memory, and the proxy keeps serving."""
import gzip
import hashlib
import json
import os
import queue
import random
import shutil
import string
import subprocess
import tempfile
import time
import zlib

import grpc
import hpack
import pytest

import h2_helpers as H
from proxy_helpers import Pki, Proxy, pattern_bytes

HOST = "localhost"
MIB = 1 << 20
BIG = 64 * MIB
CARD = "4539 1488 0343 6467"          # Visa, Luhn-valid: pii.credit_card (BLOCK)
CARD_COMPACT = "4539148803436467"
CARD_NEEDLES = [CARD, CARD_COMPACT, "4539 1488", "45391488", "0343 6467", "03436467"]
RULE = "pii.credit_card"


def tag(prefix="t"):
    """A unique marker of letters only (digits could make the DLP rules fire)."""
    return prefix + "".join(random.choice(string.ascii_lowercase) for _ in range(12))


def no_card(text):
    """The forms of the card's digits found in text (the masked evidence form is not one)."""
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("latin-1")
    return [n for n in CARD_NEEDLES if n in text]


class Env:
    def __init__(self, binary):
        self.dir = tempfile.mkdtemp(prefix="egressguard-h2-")
        self.peers = []  # origins, closed at the end
        self.proxies = []
        self.opened = []  # clients and channels the current test opened
        try:
            self._start(binary)
        except BaseException:
            self.close()
            raise

    def _start(self, binary):
        self.pki = Pki(self.dir)
        self.cafile = self.pki.path("cluster-ca.pem")
        self.origin_ca = self.pki.path("origin-root.pem")
        key, cert = self.pki.good
        self.h2 = self._peer(H.H2Origin(cert, key))
        self.h1 = self._peer(H.http1_only_origin(cert, key, alpn=("http/1.1",)))
        self.h1_no_alpn = self._peer(H.http1_only_origin(cert, key, alpn=()))
        self.grpc = self._peer(H.GrpcOrigin(cert, key))
        htdocs = os.path.join(self.dir, "htdocs")
        os.makedirs(htdocs)
        self.big_download = pattern_bytes(BIG, b"nghttpd-download")
        with open(os.path.join(htdocs, "big.bin"), "wb") as f:
            f.write(self.big_download)
        self.nghttpd = self._peer(H.Nghttpd(cert, key, htdocs))
        common = ["--allow", "localhost", "--allow", "127.0.0.1"]
        self.enforce_admin = f"127.0.0.1:{H.free_port()}"
        self.attack_admin = f"127.0.0.1:{H.free_port()}"
        self.enforce = self._proxy(binary, "--mode", "enforce", "--admin-listen", self.enforce_admin, *common)
        self.monitor = self._proxy(binary, "--mode", "monitor", *common)
        # The attacks get a proxy of their own: its memory and abuse counters are theirs alone.
        self.attack = self._proxy(binary, "--mode", "enforce", "--admin-listen", self.attack_admin, *common)

    def _peer(self, peer):
        self.peers.append(peer)
        return peer

    def _proxy(self, binary, *args):
        p = Proxy(binary, self.pki, self.dir, *args)
        self.proxies.append(p)
        return p

    def client(self, proxy, port=None):
        port = port or self.h2.port
        return self._keep(H.H2Client(H.tls_tunnel(proxy.port, HOST, port, self.cafile), f"{HOST}:{port}"))

    def raw(self, proxy, port=None):
        port = port or self.h2.port
        return self._keep(H.RawH2(H.tls_tunnel(proxy.port, HOST, port, self.cafile), f"{HOST}:{port}"))

    def channel(self, proxy, compression=None):
        return self._keep(H.grpc_channel(self.grpc.port, self.cafile, proxy_port=proxy.port, compression=compression))

    def _keep(self, peer):
        self.opened.append(peer)
        return peer

    def close_peers(self):
        """Closes what a test opened, also when it failed half way (an open connection
        would hold the proxy's drain at teardown)."""
        while self.opened:
            try:
                self.opened.pop().close()
            except Exception:  # noqa: BLE001 - already closed or broken
                pass

    def close(self):
        self.close_peers()
        for p in self.proxies:
            p.stop()
        for o in self.peers:
            o.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def env(egressguard_bin):
    e = Env(egressguard_bin)
    yield e
    e.close()


@pytest.fixture(autouse=True)
def _close_peers(env):
    yield
    env.close_peers()


# ---------------------------------------------------------------------------- checks
def curl(env, proxy, url, *args, out=None, timeout=60):
    """curl --http2 through the proxy: (exit code, status, http_version, body, stderr)."""
    cmd = ["curl", "-sS", "--http2", "--proxy", f"http://127.0.0.1:{proxy.port}", "--cacert", env.cafile,
           "-o", out or "-", "-w", "\n%{http_code} %{http_version}", *args, url]
    r = subprocess.run(cmd, capture_output=True, timeout=timeout)
    body, _, tail = r.stdout.rpartition(b"\n")
    code, _, version = tail.decode().partition(" ")
    return r.returncode, int(code or 0), version, body, r.stderr.decode()


def new_verdict(proxy, since, pred, what, timeout=5.0):
    """The first verdict written after the first `since` ones that satisfies pred."""
    end = time.monotonic() + timeout
    while True:
        for v in proxy.verdicts()[since:]:
            if pred(v):
                return v
        if time.monotonic() > end:
            raise AssertionError(f"no verdict with {what}; the newest: "
                                 + json.dumps(proxy.verdicts()[since:][-6:], indent=1)[-4000:])
        time.sleep(0.05)


def path_verdict(proxy, path, timeout=5.0):
    return proxy.wait_verdict(lambda v: v.get("path") == path, timeout)


def categories(v):
    return {f.get("category") for f in v.get("findings", [])}


def assert_h2_verdict(v, stream_id=None):
    assert v.get("protocol") == "h2", f"verdict protocol is {v.get('protocol')!r}, want h2: {v}"
    assert "stream_id" in v and int(v["stream_id"]) > 0, f"verdict has no stream_id: {v}"
    if stream_id is not None:
        assert int(v["stream_id"]) == stream_id, v


def assert_blocked_verdict(v):
    assert v.get("action") == "BLOCK" and v.get("enforced") is True, v
    assert RULE in v.get("reason", ""), v
    assert "credit_card" in categories(v), v
    assert not no_card(json.dumps(v)), f"the verdict holds the card digits: {v}"


def assert_403_json(body):
    doc = json.loads(bytes(body))
    assert RULE in doc.get("reason", ""), doc
    assert not no_card(body), body


def wait_metric(admin, pred, timeout=5.0):
    end = time.monotonic() + timeout
    while True:
        m = H.scrape(admin)
        if pred(m) or time.monotonic() > end:
            return m
        time.sleep(0.1)


def streams(m, protocol, outcome):
    return H.metric_sum(m, "egressguard_streams_total", protocol=protocol, outcome=outcome)


def goaways(m):
    return H.metric_sum(m, "egressguard_h2_goaways_total")


# ---------------------------------------------------------------------------- harness
def test_harness_direct_to_origins(env):
    # Proves the peers alone (no proxy): the h2 origin records and answers over ALPN h2, the
    # grpc server records unary/streaming/gzip and a message sent in two DATA frames, nghttpd
    # serves, the HTTP/1.1 origin refuses h2, and the raw-frame client reads what comes back.
    c = H.H2Client(H.tls_direct(env.h2.port, env.origin_ca), f"{HOST}:{env.h2.port}")
    path = "/direct/" + tag()
    r = c.get(f"/size/5000{path}")
    assert r.status == 200 and bytes(r.body) == pattern_bytes(5000)
    data = pattern_bytes(300000, b"direct")
    sid = c.request("POST", path, body=data)
    r = c.wait([sid])[0]
    assert json.loads(bytes(r.body)) == {"sha256": hashlib.sha256(data).hexdigest(), "len": len(data)}
    rec = env.h2.state.wait_done(path)
    assert rec.body_len == len(data) and bytes(rec.body_head) == data and rec.ended
    c.close()
    assert set(env.h2.state.alpn) == {"h2"}

    ch = H.grpc_channel(env.grpc.port, env.origin_ca)
    t = tag("direct").encode()
    assert ch.unary_unary(H.UNARY)(t, timeout=10) == b"ack:" + hashlib.sha256(t).hexdigest().encode()
    assert ch.stream_unary(H.COLLECT)(iter([t + b"a", t + b"b"]), timeout=10) == b"count:2"
    assert list(ch.stream_stream(H.CHAT)(iter([t + b"c"]), timeout=10)) == [b"echo:" + t + b"c"]
    gz = H.grpc_channel(env.grpc.port, env.origin_ca, compression=grpc.Compression.Gzip)
    assert gz.unary_unary(H.UNARY)(t + b"gz", timeout=10).startswith(b"ack:")
    assert [m for m in env.grpc.received() if m.startswith(t)] == [t, t + b"a", t + b"b", t + b"c", t + b"gz"]
    ch.close()
    gz.close()
    c = H.H2Client(H.tls_direct(env.grpc.port, env.origin_ca), f"{HOST}:{env.grpc.port}")
    for encoding in (None, "gzip", "deflate"):
        r = raw_grpc_call(c, t + b" split " + (encoding or "identity").encode(), encoding)
        assert r.status == 200 and r.grpc_status() == 0, r
        assert env.grpc.wait_message(t + b" split " + (encoding or "identity").encode())
    c.close()

    c = H.H2Client(H.tls_direct(env.nghttpd.port, env.origin_ca), f"{HOST}:{env.nghttpd.port}")
    sid = c.request("GET", "/big.bin")
    r = c.wait([sid], timeout=30)[0]
    assert r.status == 200 and hashlib.sha256(r.body).digest() == hashlib.sha256(env.big_download).digest()
    c.close()

    s = H.tls_direct(env.h1.port, env.origin_ca, alpn=("h2", "http/1.1"))
    assert s.selected_alpn_protocol() == "http/1.1"
    s.close()
    s = H.tls_direct(env.h1_no_alpn.port, env.origin_ca, alpn=("h2", "http/1.1"))
    assert s.selected_alpn_protocol() is None
    s.close()

    raw = H.RawH2(H.tls_direct(env.h2.port, env.origin_ca), f"{HOST}:{env.h2.port}")
    raw.send(H.PingFrame(0, opaque_data=b"harness!"),
             H.HeadersFrame(1, data=H.hpack_request("/raw/" + tag(), f"{HOST}:{env.h2.port}"),
                            flags=["END_STREAM", "END_HEADERS"]))
    assert raw.wait(lambda r: any(isinstance(f, H.DataFrame) and f.stream_id == 1 and "END_STREAM" in f.flags
                                  for f in r.frames))
    assert any(isinstance(f, H.PingFrame) and "ACK" in f.flags and f.opaque_data == b"harness!" for f in raw.frames)
    raw.close()


# ---------------------------------------------------------------------------- h2 through
def test_curl_h2_get_and_post_negotiate_h2(env):
    # Proves curl --http2 gets h2 from the proxy, the origin leg is h2 too, and each stream's verdict says h2 +
    # stream id.
    p = env.enforce
    path = f"/size/4321/{tag('get')}"
    rc, code, version, body, err = curl(env, p, f"https://{HOST}:{env.h2.port}{path}")
    assert rc == 0 and code == 200, (rc, code, version, body[:300], err)
    assert version == "2", f"the client got HTTP/{version} from the proxy, want h2"
    assert body == pattern_bytes(4321)
    assert env.h2.state.for_path(path), "the request did not reach the h2-only origin over h2"
    assert_h2_verdict(path_verdict(p, path), stream_id=1)

    path = "/post/" + tag()
    data = pattern_bytes(200000, b"post-small")
    rc, code, version, body, err = curl_stdin(env, p, f"https://{HOST}:{env.h2.port}{path}", data)
    assert rc == 0 and code == 200 and version == "2", (rc, code, version, body[:300], err)
    assert json.loads(body) == {"sha256": hashlib.sha256(data).hexdigest(), "len": len(data)}
    rec = env.h2.state.wait_done(path)
    assert rec.method == "POST" and bytes(rec.body_head) == data
    v = path_verdict(p, path)
    assert_h2_verdict(v, stream_id=1)
    assert v.get("method") == "POST" and int(v.get("bytes_out", 0)) >= len(data), v
    assert v.get("action", "ALLOW") == "ALLOW" and not v.get("findings"), v


def curl_stdin(env, proxy, url, data, ctype="application/octet-stream"):
    """curl --http2 POSTing data (from stdin) through the proxy; returns what curl() does."""
    cmd = ["curl", "-sS", "--http2", "--proxy", f"http://127.0.0.1:{proxy.port}", "--cacert", env.cafile,
           "-o", "-", "-w", "\n%{http_code} %{http_version}", "--data-binary", "@-",
           "-H", f"Content-Type: {ctype}", url]
    r = subprocess.run(cmd, input=data, capture_output=True, timeout=60)
    body, _, tail = r.stdout.rpartition(b"\n")
    code, _, version = tail.decode().partition(" ")
    return r.returncode, int(code or 0), version, body, r.stderr.decode()


def test_h2_64mib_upload_and_download_byte_exact(env):
    # Proves 64 MiB each way over h2 on both legs (enforce: past the hold limit) arrives byte-exact.
    p = env.enforce
    data = pattern_bytes(BIG, b"h2-upload")
    want = hashlib.sha256(data).hexdigest()
    up = os.path.join(env.dir, "up64.bin")
    with open(up, "wb") as f:
        f.write(data)
    path = "/upload/" + tag()
    rc, code, version, body, err = curl(env, p, f"https://{HOST}:{env.h2.port}{path}", "--data-binary", f"@{up}",
                                        "-H", "Content-Type: application/octet-stream", timeout=120)
    assert rc == 0 and code == 200 and version == "2", (rc, code, version, body[:300], err)
    assert json.loads(body) == {"sha256": want, "len": BIG}
    rec = env.h2.state.wait_done(path)
    assert rec.body_len == BIG and rec.body_sha256() == want
    assert_h2_verdict(path_verdict(p, path), stream_id=1)

    down = os.path.join(env.dir, "down64.bin")
    rc, code, version, body, err = curl(env, p, f"https://{HOST}:{env.nghttpd.port}/big.bin", out=down, timeout=120)
    assert rc == 0 and code == 200 and version == "2", (rc, code, version, body[:300], err)
    h = hashlib.sha256()
    with open(down, "rb") as f:
        for piece in iter(lambda: f.read(MIB), b""):
            h.update(piece)
    assert h.hexdigest() == hashlib.sha256(env.big_download).hexdigest()
    assert os.path.getsize(down) == BIG
    v = p.wait_verdict(lambda v: v.get("path") == "/big.bin" and int(v.get("port", 0)) == env.nghttpd.port)
    assert_h2_verdict(v, stream_id=1)
    assert int(v.get("bytes_in", 0)) >= BIG, v
    os.unlink(up)
    os.unlink(down)


@pytest.mark.parametrize("which", ["alpn-http1.1", "no-alpn"])
def test_http1_only_origin_byte_exact(env, which):
    # Proves curl --http2 to an origin that does not speak h2 still works byte-exact, with a verdict that matches
    # what the client got.
    origin = env.h1 if which == "alpn-http1.1" else env.h1_no_alpn
    p = env.enforce
    path = f"/size/{3 * MIB + 7}/{tag('hone')}"
    rc, code, version, body, err = curl(env, p, f"https://{HOST}:{origin.port}{path}")
    assert rc == 0 and code == 200, (rc, code, version, body[:300], err)
    assert body == pattern_bytes(3 * MIB + 7)
    v = path_verdict(p, path)
    if version == "2":
        assert_h2_verdict(v)
    else:
        assert version == "1.1" and v.get("protocol", "") != "h2", (version, v)
    path = "/hone-post/" + tag()
    data = pattern_bytes(2 * MIB + 3, b"h1-post")
    rc, code, version2, body, err = curl_stdin(env, p, f"https://{HOST}:{origin.port}{path}", data)
    assert rc == 0 and code == 200, (rc, code, version2, body[:300], err)
    assert json.loads(body) == {"sha256": hashlib.sha256(data).hexdigest(), "len": len(data)}
    assert origin.state.received(path) == len(data)
    v = path_verdict(p, path)
    assert v.get("method") == "POST" and (v.get("protocol") == "h2") == (version2 == "2"), (version2, v)


# ---------------------------------------------------------------------------- enforce
def test_enforce_blocks_card_in_body_header_and_path(env):
    # Proves a card in an h2 body, header or (percent-encoded) :path gets 403 JSON, the origin gets none of it, a
    # clean POST passes.
    p = env.enforce
    before = H.scrape(env.enforce_admin)
    base = f"https://{HOST}:{env.h2.port}"
    # Body.
    path = "/card-body/" + tag()
    body_sent = (f"customer {path} pays with card {CARD} today\n" * 40).encode()
    rc, code, version, body, err = curl_stdin(env, p, base + path, body_sent, "text/plain")
    assert rc == 0 and code == 403 and version == "2", (code, version, err, body[:300])
    assert_403_json(body)
    time.sleep(0.3)
    recs = env.h2.state.for_path(path)
    assert sum(r.body_len for r in recs) == 0, "the origin got body bytes of the blocked stream"
    assert all(not r.ended for r in recs), "the origin saw the blocked request end (it would answer it)"
    for r in recs:  # anything that went upstream was cancelled
        assert r.done.wait(3) and r.reset == H.CANCEL, f"upstream stream not reset with CANCEL: reset={r.reset}"
    v = path_verdict(p, path)
    assert_h2_verdict(v, stream_id=1)
    assert_blocked_verdict(v)
    # Header.
    path = "/card-header/" + tag()
    rc, code, version, body, err = curl(env, p, base + path, "-H", f"X-Note: {CARD}")
    assert code == 403 and version == "2", (code, version, err)
    assert_403_json(body)
    assert env.h2.state.for_path(path) == [], "a request with a card header reached the origin"
    v = path_verdict(p, path)
    assert_h2_verdict(v, stream_id=1)
    assert_blocked_verdict(v)
    # :path query, plain and percent-encoded ("%34" is "4").
    for q in (f"card={CARD_COMPACT}&x=1", "card=%34539%201488%200343%206467&x=1"):
        prefix = "/card-path/" + tag()
        rc, code, version, body, err = curl(env, p, f"{base}{prefix}?{q}")
        assert code == 403 and version == "2", (q, code, version, err)
        assert_403_json(body)
        assert env.h2.state.for_prefix(prefix) == [], f"a :path with a card reached the origin ({q})"
        v = p.wait_verdict(lambda v: v.get("path", "").startswith(prefix))
        assert_h2_verdict(v, stream_id=1)
        assert_blocked_verdict(v)
    # Clean.
    path = "/clean-post/" + tag()
    data = pattern_bytes(100000, b"clean-h2")
    rc, code, version, body, err = curl_stdin(env, p, base + path, data)
    assert rc == 0 and code == 200 and version == "2", (rc, code, version, body[:300], err)
    assert json.loads(body)["sha256"] == hashlib.sha256(data).hexdigest()
    after = wait_metric(env.enforce_admin, lambda m: streams(m, "h2", "blocked") - streams(before, "h2", "blocked") >= 4
                        and streams(m, "h2", "allowed") > streams(before, "h2", "allowed"))
    assert streams(after, "h2", "blocked") - streams(before, "h2", "blocked") == 4, \
        "egressguard_streams_total{protocol=h2,outcome=blocked} did not count the four blocked streams"
    assert streams(after, "h2", "allowed") > streams(before, "h2", "allowed")


def test_100_concurrent_streams_one_blocked(env):
    # Proves 100 streams at once on one connection: the one with a card gets 403, the other 99 get 200 byte-exact.
    c = env.client(env.enforce)
    assert c.conn.remote_settings.max_concurrent_streams == 100, "SETTINGS_MAX_CONCURRENT_STREAMS is not 100"
    t = tag("many")
    bodies, sids = {}, {}
    for i in range(100):
        body = (f"{t} stream {i} carries plain words, kestrel harbour granite willow ".encode() * 100)[:4096]
        if i == 57:
            body = (f"{t} stream {i} carries card {CARD} ".encode() * 200)[:4096]
        bodies[i] = body
        sids[i] = c.request("POST", f"/many/{t}/{i}", body=body, headers=[("content-type", "text/plain")])
    c.wait(list(sids.values()), timeout=30)
    bad = {}
    for i, sid in sids.items():
        r = c.responses[sid]
        if i == 57:
            if r.status != 403:
                bad[i] = r
            else:
                assert_403_json(r.body)
        elif r.status != 200 or json.loads(bytes(r.body)) != {"sha256": hashlib.sha256(bodies[i]).hexdigest(),
                                                               "len": 4096}:
            bad[i] = r
    c.close()
    assert not bad, f"{len(bad)} streams went wrong: {list(bad.items())[:5]}"
    assert env.h2.state.received(f"/many/{t}/57") == 0
    assert all(env.h2.state.received(f"/many/{t}/{i}") == 4096 for i in range(100) if i != 57)
    v = path_verdict(env.enforce, f"/many/{t}/57")
    assert_h2_verdict(v, stream_id=sids[57])
    assert_blocked_verdict(v)
    v = path_verdict(env.enforce, f"/many/{t}/3")
    assert_h2_verdict(v, stream_id=sids[3])


# ---------------------------------------------------------------------------- gRPC
def assert_denied(err, needles):
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED, (err.code(), err.details())
    assert RULE in (err.details() or ""), f"grpc-message does not name the rule: {err.details()!r}"
    assert not no_card(err.details() or ""), err.details()
    assert not [n for n in needles if n in (err.details() or "")], err.details()


def assert_never_received(env, since, *needles):
    """No message the gRPC server got after its first `since` holds a needle or the card."""
    time.sleep(0.3)  # anything forwarded would have reached the handler by now
    got = [m for m in env.grpc.received()[since:] if any(n.encode() in m for n in needles) or no_card(m)]
    assert not got, f"the gRPC server received a blocked message: {got[:3]}"


@pytest.mark.parametrize("compression", [None, grpc.Compression.Gzip], ids=["identity", "gzip"])
def test_grpc_unary(env, compression):
    # Proves a clean unary call passes; one with a card gets PERMISSION_DENIED naming the rule and the handler
    # never sees it.
    p = env.enforce
    before = H.scrape(env.enforce_admin)
    since = len(p.verdicts())
    got_before = len(env.grpc.received())
    ch = env.channel(p, compression)
    call = ch.unary_unary(H.UNARY)
    clean = f"{tag('unary')} a clean request, nothing to see".encode() * 20
    assert call(clean, timeout=15) == b"ack:" + hashlib.sha256(clean).hexdigest().encode()
    assert clean in env.grpc.received(H.UNARY)
    t = tag("unarycard")
    with pytest.raises(grpc.RpcError) as e:
        call(f"{t} customer card {CARD} please charge it".encode() * 20, timeout=15)
    assert_denied(e.value, [t])
    assert_never_received(env, got_before, t)
    v = new_verdict(p, since, lambda v: v.get("path") == H.UNARY and v.get("action") == "BLOCK", "a blocked unary call")
    assert v.get("protocol") in ("h2", "grpc") and int(v.get("stream_id", 0)) > 0, v
    assert_blocked_verdict(v)
    ch.close()
    after = wait_metric(env.enforce_admin, lambda m: streams(m, "grpc", "blocked") > streams(before, "grpc", "blocked"))
    assert streams(after, "grpc", "blocked") - streams(before, "grpc", "blocked") == 1
    assert streams(after, "grpc", "allowed") > streams(before, "grpc", "allowed")


def raw_grpc_call(c, payload, encoding=None, split_at=None, path=H.UNARY):
    """A unary gRPC call written by hand: the message (compressed per encoding) in two DATA
    frames cut at split_at (default: the middle), sent apart."""
    headers = H.grpc_headers(path)
    if encoding == "gzip":
        msg, flag = gzip.compress(payload), True
    elif encoding == "deflate":
        msg, flag = zlib.compress(payload), True
    else:
        msg, flag = payload, False
    if encoding:
        headers = headers + [("grpc-encoding", encoding), ("grpc-accept-encoding", "identity,gzip,deflate")]
    wire = H.grpc_message(msg, compressed=flag)
    cut = split_at if split_at is not None else len(wire) // 2
    sid = c.request("POST", path, headers=headers, end_stream=False)
    c.send_data(sid, wire[:cut])
    time.sleep(0.15)  # its own TLS record and its own read at the proxy
    c.send_data(sid, wire[cut:], end_stream=True)
    return c.wait([sid])[0]


@pytest.mark.parametrize("encoding", [None, "gzip", "deflate"])
def test_grpc_card_split_across_data_frames(env, encoding):
    # Proves a gRPC message cut across two DATA frames in the middle of the card (also compressed) is blocked; a
    # clean one passes.
    p = env.enforce
    c = env.client(p, env.grpc.port)
    clean = f"{tag('split')} clean message split in two frames".encode()
    r = raw_grpc_call(c, clean, encoding)
    assert r.status == 200 and r.grpc_status() == 0, r
    assert env.grpc.wait_message(clean), "the clean split message did not reach the handler whole"
    t = tag("splitcard")
    payload = f"{t} customer card {CARD} thanks".encode()
    cut = None
    if encoding is None:
        cut = 5 + payload.index(CARD.encode()) + len(CARD) // 2  # inside the card: "4539 1488" | " 0343 6467"
    since = len(p.verdicts())
    got_before = len(env.grpc.received())
    r = raw_grpc_call(c, payload, encoding, split_at=cut)
    c.close()
    assert r.status == 200 and r.grpc_status() == 7, r
    assert RULE in r.grpc_message() and not no_card(r.grpc_message()), r.grpc_message()
    assert_never_received(env, got_before, t)
    assert_blocked_verdict(new_verdict(p, since, lambda v: v.get("path") == H.UNARY and v.get("action") == "BLOCK",
                                       "a blocked split gRPC call"))


def test_grpc_client_streaming(env):
    # Proves client streaming is enforced per message: clean messages reach the handler, the card one and later
    # never do.
    t = tag("cstream")
    first, second = f"{t} first clean".encode(), f"{t} second clean".encode()
    card, after = f"{t} third has card {CARD}".encode(), f"{t} fourth after".encode()
    waited = []
    got_before = len(env.grpc.received())

    def messages():
        yield first
        yield second
        waited.append(env.grpc.wait_message(second, 5))
        yield card
        time.sleep(0.2)
        yield after

    since = len(env.enforce.verdicts())
    ch = env.channel(env.enforce)
    with pytest.raises(grpc.RpcError) as e:
        ch.stream_unary(H.COLLECT)(messages(), timeout=15)
    ch.close()
    assert waited == [True], "the clean messages before the card did not reach the handler"
    assert_denied(e.value, [t])
    got = env.grpc.received(H.COLLECT)
    assert first in got and second in got
    assert card not in got and after not in got
    assert_never_received(env, got_before, "third has card", "fourth after")
    assert_blocked_verdict(new_verdict(env.enforce, since, lambda v: v.get("path") == H.COLLECT
                                       and v.get("action") == "BLOCK", "a blocked client-streaming call"))
    ch = env.channel(env.enforce)
    ok = [f"{tag('cclean')} message {w}".encode() for w in ("one", "two", "three")]
    assert ch.stream_unary(H.COLLECT)(iter(ok), timeout=15) == b"count:3"
    ch.close()


def test_grpc_bidi_streaming(env):
    # Proves bidi streaming is enforced per message: clean ones are echoed, the card gets PERMISSION_DENIED and
    # never arrives.
    t = tag("bidi")
    q = queue.Queue()
    got_before = len(env.grpc.received())

    def messages():
        while True:
            m = q.get()
            if m is None:
                return
            yield m

    since = len(env.enforce.verdicts())
    ch = env.channel(env.enforce, grpc.Compression.Gzip)
    responses = ch.stream_stream(H.CHAT)(messages(), timeout=20)
    for word in ("alpha", "beta"):
        m = f"{t} {word} clean".encode()
        q.put(m)
        assert next(responses) == b"echo:" + m
    q.put(f"{t} gamma card {CARD}".encode())
    with pytest.raises(grpc.RpcError) as e:
        next(responses)
    q.put(None)
    ch.close()
    assert_denied(e.value, [t])
    got = env.grpc.received(H.CHAT)
    assert f"{t} alpha clean".encode() in got and f"{t} beta clean".encode() in got
    assert_never_received(env, got_before, "gamma card")
    assert_blocked_verdict(new_verdict(env.enforce, since, lambda v: v.get("path") == H.CHAT
                                       and v.get("action") == "BLOCK", "a blocked bidi call"))


# ---------------------------------------------------------------------------- monitor
def test_monitor_forwards_and_reports(env):
    # Proves monitor mode forwards a card over h2 (and gRPC) byte-exact and reports it with the finding.
    p = env.monitor
    path = "/monitor/" + tag()
    data = f"monitored {path} card {CARD}\n".encode() * 10
    rc, code, version, body, err = curl_stdin(env, p, f"https://{HOST}:{env.h2.port}{path}", data, "text/plain")
    assert rc == 0 and code == 200 and version == "2", (rc, code, version, body[:300], err)
    assert json.loads(body)["sha256"] == hashlib.sha256(data).hexdigest()
    assert bytes(env.h2.state.wait_done(path).body_head) == data
    v = path_verdict(p, path)
    assert_h2_verdict(v, stream_id=1)
    assert v.get("action") == "BLOCK" and not v.get("enforced", False) and "credit_card" in categories(v), v
    since = len(p.verdicts())
    ch = env.channel(p)
    msg = f"{tag('mongrpc')} card {CARD}".encode()
    assert ch.unary_unary(H.UNARY)(msg, timeout=15) == b"ack:" + hashlib.sha256(msg).hexdigest().encode()
    ch.close()
    assert msg in env.grpc.received(H.UNARY)
    v = new_verdict(p, since, lambda v: v.get("path") == H.UNARY and "credit_card" in categories(v),
                    "a reported gRPC call")
    assert v.get("action") == "BLOCK" and not v.get("enforced", False), v


# ---------------------------------------------------------------------------- attacks
class Abuse:
    """Before/after of the attack proxy's abuse verdicts and GOAWAY metric."""

    def __init__(self, env):
        self.env = env
        self.verdicts = self._count()
        self.metric = goaways(H.scrape(env.attack_admin))

    def _count(self):
        return sum(1 for v in self.env.attack.verdicts() if v.get("reason", "").startswith("h2_abuse:"))

    def check(self, what):
        end = time.monotonic() + 5
        while self._count() <= self.verdicts and time.monotonic() < end:
            time.sleep(0.05)
        assert self._count() > self.verdicts, f"{what}: no verdict with reason h2_abuse:..."
        m = wait_metric(self.env.attack_admin, lambda m: goaways(m) > self.metric)
        assert goaways(m) > self.metric, f"{what}: egressguard_h2_goaways_total did not move"


def still_serving(env):
    p = env.attack
    assert p.alive(), "the proxy died"
    c = env.client(p)
    path = f"/size/777/{tag('after')}"
    r = c.get(path)
    c.close()
    assert r.status == 200 and bytes(r.body) == pattern_bytes(777), r


def expect_calm(raw, what, timeout=5.0):
    raw.wait(lambda r: r.goaway() is not None, timeout)
    g = raw.goaway()
    assert g is not None, (f"{what}: no GOAWAY (peer closed={raw.eof}, send error={raw.send_failed}, "
                           f"last frames={raw.frames[-5:]})")
    assert g.error_code == H.ENHANCE_YOUR_CALM, f"{what}: GOAWAY error code {g.error_code:#x}, want ENHANCE_YOUR_CALM"
    return g


def test_rapid_reset(env):
    # Proves 1000 HEADERS+RST_STREAM pairs (CVE-2023-44487) end in GOAWAY(ENHANCE_YOUR_CALM) and the proxy keeps
    # serving.
    abuse = Abuse(env)
    raw = env.raw(env.attack)
    raw.poll(0.3)
    t = tag("rr")

    def pair(i):
        sid = 2 * i + 1
        return [H.HeadersFrame(sid, data=H.hpack_request(f"/rr/{t}/{i}", raw.authority),
                               flags=["END_STREAM", "END_HEADERS"]),
                H.RstStreamFrame(sid, error_code=H.CANCEL)]

    sent = raw.flood(pair, 1000, batch=50)
    expect_calm(raw, f"rapid reset ({sent} pairs sent)")
    raw.close()
    abuse.check("rapid reset")
    still_serving(env)


def test_continuation_flood(env):
    # Proves HEADERS without END_HEADERS then endless CONTINUATION (CVE-2024-27316) ends in GOAWAY(ENHANCE_YOUR_CALM).
    abuse = Abuse(env)
    raw = env.raw(env.attack)
    raw.poll(0.3)
    path = "/cont/" + tag()
    raw.send(H.HeadersFrame(1, data=H.hpack_request(path, raw.authority), flags=["END_STREAM"]))
    sent = raw.flood(lambda i: H.ContinuationFrame(1, data=H.hpack_literal(f"x-cont-{i}", "v" * 24)), 500, batch=20)
    expect_calm(raw, f"CONTINUATION flood ({sent} frames sent)")
    raw.close()
    assert env.h2.state.for_path(path) == []
    abuse.check("CONTINUATION flood")
    still_serving(env)


def test_hpack_bomb(env):
    # Proves header blocks of one 16 KiB frame that decode to ~48 MB each (a 3000-byte value indexed once, then
    # referenced 16000 times) are refused without memory growth and never reach the origin. One frame each, so the
    # CONTINUATION limits (the proxy's, and libnghttp2's own 8) play no part.
    p = env.attack
    abuse = Abuse(env)
    hwm_before = H.rss_kib(p.proc.pid, "VmHWM")
    value = "b" * 3000
    outcomes = []
    paths = []
    for _ in range(8):
        raw = env.raw(p)
        raw.poll(0.3)
        path = "/bomb/" + tag()
        paths.append(path)
        block = H.hpack_request(path, raw.authority) + H.hpack_literal("x-bomb", value, index=True)
        block += b"\xbe" * (16384 - len(block))  # index 62: the newest dynamic-table entry, x-bomb
        raw.send(H.HeadersFrame(1, data=block, flags=["END_STREAM", "END_HEADERS"]))
        raw.wait(lambda r: r.goaway() is not None or 1 in r.resets()
                 or any(isinstance(f, H.HeadersFrame) and f.stream_id == 1 for f in r.frames), 5)
        g = raw.goaway()
        answered = [f for f in raw.frames if isinstance(f, H.HeadersFrame) and f.stream_id == 1]
        if g is not None:
            assert g.error_code == H.ENHANCE_YOUR_CALM, f"HPACK bomb: GOAWAY code {g.error_code:#x}"
            outcomes.append("goaway")
        elif 1 in raw.resets():
            outcomes.append(f"rst {raw.resets()[1]:#x}")
        elif answered:
            dec = hpack.Decoder()
            status = dict(dec.decode(answered[0].data)).get(b":status", b"")
            assert status.startswith(b"4"), f"HPACK bomb answered {status!r}"
            outcomes.append("status " + status.decode())
        else:
            pytest.fail(f"HPACK bomb: no GOAWAY, RST_STREAM or refusal (closed={raw.eof}, frames={raw.frames[-5:]})")
        raw.close()
    hwm_after = H.rss_kib(p.proc.pid, "VmHWM")
    assert hwm_after - hwm_before < 64 * 1024, f"peak RSS grew {(hwm_after - hwm_before) // 1024} MiB ({outcomes})"
    for path in paths:
        assert env.h2.state.for_path(path) == [], "an HPACK bomb reached the origin"
    if "goaway" in outcomes:
        abuse.check("HPACK bomb")
    still_serving(env)


def test_too_many_concurrent_streams(env):
    # Proves opening 300 streams without closing any gets the ones past 100 refused (or the connection told to
    # go), no crash.
    abuse = Abuse(env)
    raw = env.raw(env.attack)
    raw.wait(lambda r: any(isinstance(f, H.SettingsFrame) and "ACK" in f.flags for f in r.frames), 3)
    limit = [f.settings.get(H.SettingsFrame.MAX_CONCURRENT_STREAMS) for f in raw.frames
             if isinstance(f, H.SettingsFrame) and "ACK" not in f.flags]
    assert 100 in limit, f"SETTINGS_MAX_CONCURRENT_STREAMS 100 not advertised: {limit}"
    t = tag("open")
    sent = raw.flood(lambda i: H.HeadersFrame(2 * i + 1, data=H.hpack_request(f"/open/{t}/{i}", raw.authority,
                                                                              method="POST"),
                                              flags=["END_HEADERS"]), 300, batch=25, stop=lambda r: False)
    raw.wait(lambda r: r.goaway() is not None or sum(c == H.REFUSED_STREAM for c in r.resets().values()) >= 200, 5)
    g = raw.goaway()
    refused = {sid for sid, code in raw.resets().items() if code == H.REFUSED_STREAM}
    assert g is not None or len(refused) >= 200, f"{sent} streams sent; refused {len(refused)}, no GOAWAY"
    accepted = [2 * i + 1 for i in range(sent)
                if 2 * i + 1 not in refused and (g is None or 2 * i + 1 <= g.last_stream_id)]
    assert len(accepted) <= 100, f"{len(accepted)} streams accepted past the limit of 100 (GOAWAY {g})"
    raw.close()
    assert len(env.h2.state.for_prefix(f"/open/{t}/")) <= 100
    assert env.attack.alive()
    if g is not None:
        assert g.error_code in (H.ENHANCE_YOUR_CALM, H.PROTOCOL_ERROR, H.REFUSED_STREAM), f"GOAWAY {g.error_code:#x}"
        if g.error_code == H.ENHANCE_YOUR_CALM:
            abuse.check("too many streams")
    still_serving(env)


FLOODS = {
    "ping": lambda i: H.PingFrame(0, opaque_data=b"%08d" % (i % 10 ** 8)),
    "settings": lambda i: H.SettingsFrame(0, settings={H.SettingsFrame.HEADER_TABLE_SIZE: 4096}),
    "window-update": lambda i: H.WindowUpdateFrame(0, window_increment=1),
}


@pytest.mark.parametrize("kind", list(FLOODS))
def test_control_frame_flood(env, kind):
    # Proves 6000 PING / SETTINGS / WINDOW_UPDATE frames at once end in GOAWAY(ENHANCE_YOUR_CALM) and the proxy
    # keeps serving.
    abuse = Abuse(env)
    raw = env.raw(env.attack)
    raw.poll(0.3)
    sent = raw.flood(FLOODS[kind], 6000, batch=250)
    expect_calm(raw, f"{kind} flood ({sent} frames sent)")
    raw.close()
    abuse.check(f"{kind} flood")
    still_serving(env)


def test_h2_limits_come_from_the_config_file(env, egressguard_bin):
    # Proves the proxy.h2.* keys are read from a config file and applied: the proxy advertises the configured
    # SETTINGS_MAX_CONCURRENT_STREAMS and sends GOAWAY(ENHANCE_YOUR_CALM) to a client that opens more.
    cfg = os.path.join(env.dir, "h2-limits.yaml")
    with open(cfg, "w") as f:
        f.write("proxy:\n  h2:\n    max_concurrent_streams: 7\n    max_header_list_bytes: 8192\n")
    check = subprocess.run([egressguard_bin, "config", "check", cfg], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    proxy = env._proxy(egressguard_bin, "--config", cfg, "--mode", "enforce", "--allow", "localhost")
    raw = env.raw(proxy)
    raw.wait(lambda r: any(isinstance(f, H.SettingsFrame) and "ACK" in f.flags for f in r.frames), 3)
    limit = [f.settings.get(H.SettingsFrame.MAX_CONCURRENT_STREAMS) for f in raw.frames
             if isinstance(f, H.SettingsFrame) and "ACK" not in f.flags]
    assert 7 in limit, limit
    t = tag("cfg")
    raw.flood(lambda i: H.HeadersFrame(2 * i + 1, data=H.hpack_request(f"/cfg/{t}/{i}", raw.authority, method="POST"),
                                       flags=["END_HEADERS"]), 20, batch=20, stop=lambda r: False)
    raw.wait(lambda r: r.goaway() is not None, 5)
    g = raw.goaway()
    assert g is not None and g.error_code == H.ENHANCE_YOUR_CALM, g
    raw.close()
    assert len(env.h2.state.for_prefix(f"/cfg/{t}/")) <= 7
    bad = os.path.join(env.dir, "h2-bad.yaml")
    with open(bad, "w") as f:
        f.write("proxy:\n  h2:\n    max_concurrent_streams: 0\n")
    check = subprocess.run([egressguard_bin, "config", "check", bad], capture_output=True, text=True)
    assert check.returncode != 0 and "max_concurrent_streams" in check.stdout + check.stderr, check.stdout


# --- the attacker's view: no byte of a planted value reaches the origin -----------------------------

LEAK_HOLD = 64 * 1024   # the leak proxy's --hold-limit: bodies below stream past it
LEAK_BODY = 256 * 1024
LEAK_VALUES = {
    "json": ("json", b"4539 1488 0343 6467"),
    "log": ("log", b"CH08 0483 5098 7654 3210 0"),
    "attachment": ("attachment", b"-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA0Z3VS5JJcds3xfn/ygWyF8PbnGy0AHB7MhgHcTz6sE2I2yPB\n"),
}
# Where the client cuts its DATA frames: the relay must not depend on them.
SPLITS = {
    "max-frames": lambda body, off, n: list(range(0, len(body), 16384)),
    "odd-frames": lambda body, off, n: list(range(0, len(body), 997)),
    "value-halved": lambda body, off, n: sorted(set(list(range(0, len(body), 16384)) + [off + n // 2])),
    "value-bytewise": lambda body, off, n: sorted(set(list(range(0, off, 16384)) + list(range(off - 8, off + n + 8)))),
}


@pytest.fixture(scope="module")
def leak_proxy(env, egressguard_bin):
    return env._proxy(egressguard_bin, "--mode", "enforce", "--hold-limit", str(LEAK_HOLD), "--allow", "localhost")


@pytest.mark.parametrize("split", list(SPLITS))
@pytest.mark.parametrize("kind", list(LEAK_VALUES))
def test_no_byte_of_a_planted_value_reaches_the_origin(env, leak_proxy, kind, split):
    # Proves, with an origin that records every byte it receives and a client that cuts its own DATA frames
    # (anywhere, including inside the value), that a value planted past the hold limit is blocked and no
    # prefix of it (not even its first half) reaches the origin in enforce mode.
    import leak_helpers as L
    shape, value = LEAK_VALUES[kind]
    body, off, ctype = L.body_with_value(shape, LEAK_BODY, value)
    assert len(body) < H.KEEP_BODY  # the origin keeps every byte of it
    cuts = sorted({c for c in SPLITS[split](body, off, len(value)) if 0 <= c < len(body)}) + [len(body)]
    path = f"/leak/{kind}/{split}/{tag()}"
    c = env.client(leak_proxy)
    sid = c.request("POST", path, body=None, headers=[("content-type", ctype)], end_stream=False)
    paused = False
    for a, b in zip(cuts, cuts[1:]):
        piece = body[a:b]
        if split == "odd-frames" and not paused and b > off - 4096:
            # Before the value is sent, the client waits until the decided part has streamed
            # out past the hold limit: the value then meets the streaming path, not the hold.
            paused = True
            deadline = time.monotonic() + 10
            while env.h2.state.received(path) <= LEAK_HOLD and time.monotonic() < deadline:
                c._read(0.05)
        deadline = time.monotonic() + 20
        while c.conn.local_flow_control_window(sid) < len(piece) or c.conn.max_outbound_frame_size < len(piece):
            if c.responses[sid].done or time.monotonic() > deadline:
                break
            c._read(0.05)
        if c.responses[sid].done:
            break  # answered (blocked) before the client finished: the rest never leaves the client
        try:
            c.send_data(sid, piece, end_stream=b == len(body))
        except H.h2.exceptions.StreamClosedError:
            break  # the proxy answered and closed its side while the client was still sending
    r = c.wait([sid])[0]
    assert r.status == 403 or r.reset is not None, (r.status, r.reset)
    v = leak_proxy.wait_verdict(lambda v: v.get("path") == path and v.get("stream_id") == sid, timeout=10)
    assert v["action"] == "BLOCK" and v["enforced"], v
    got = b"".join(bytes(rec.body_head) for rec in env.h2.state.for_path(path))
    for needle in (value, value[:8], value[: len(value) // 2]):
        assert needle not in got, f"{needle[:20]!r} reached the origin ({len(got)} bytes received)"
    if split == "odd-frames":
        assert len(got) > LEAK_HOLD, f"only {len(got)} bytes streamed past the hold limit before the value"
    # What did leave is an exact prefix of the body, all of it before the value.
    assert body.startswith(got) and len(got) <= off, (len(got), off)
    assert int(v.get("bytes_out_before_block", 0)) >= len(got)
