"""Admin listener of `egressguard run`: /metrics scraped with a real HTTP client after
real traffic through the proxy (curl, TLS-bumped, one blocked card POST, one denied
destination) moves each counter by exactly what the traffic did, checked against the
verdicts the store holds; /healthz and /readyz answer. PROXY protocol v2: the source
address in the header names the client and its workload (CIDR map from --config); a
malformed header is refused and the proxy keeps serving."""
import os
import re
import socket
import ssl
import struct
import subprocess
import threading
import time
import urllib.error
import urllib.request

import grpc
import pytest

from proxy_helpers import Origin, Pki
from store_helpers import free_port, pb, read_run_banner  # noqa: F401

CARD = "4539 1488 0343 6467"
LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def start_run(binary, workdir, pki, *extra):
    origin = Origin(pki.good[1], pki.good[0])
    home = os.path.join(workdir, f"home-{time.monotonic_ns()}")
    store_port, admin_port = free_port(), free_port()
    proc = subprocess.Popen([binary, "run", "--home", home, "--proxy-listen", "127.0.0.1:0",
                             "--store-listen", f"127.0.0.1:{store_port}", "--admin-listen", f"127.0.0.1:{admin_port}",
                             "--upstream-ca", pki.path("origin-root.pem"), "--allow", "localhost",
                             "--initial-mode", "enforce", "--workers", "2", "--console-listen", "127.0.0.1:0", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    port, admin, seen = read_run_banner(proc, want_admin=True)
    if port is None or admin is None:
        proc.kill()
        origin.close()
        pytest.fail("egressguard run did not start: " + seen + proc.stderr.read())
    assert admin == f"127.0.0.1:{admin_port}"
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    stderr_lines = []
    threading.Thread(target=lambda: [stderr_lines.append(l) for l in proc.stderr], daemon=True).start()
    return proc, {"proxy": port, "store": f"127.0.0.1:{store_port}", "admin": admin, "origin": origin,
                  "bundle": os.path.join(home, "ca-bundle.pem"), "stderr": stderr_lines}


def stop_run(proc, env):
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
    env["origin"].close()


@pytest.fixture()
def embedded(egressguard_bin, workdir):
    proc, env = start_run(egressguard_bin, workdir, Pki(workdir))
    yield env
    stop_run(proc, env)


def http_get(env, path):
    try:
        with urllib.request.urlopen(f"http://{env['admin']}{path}", timeout=10) as r:
            return r.status, r.read().decode(), r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), e.headers.get("Content-Type", "")


def scrape(env):
    status, text, ctype = http_get(env, "/metrics")
    assert status == 200 and ctype.startswith("text/plain"), (status, ctype)
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = LINE.match(line)
        assert m, f"unparseable exposition line: {line!r}"
        labels = frozenset(LABEL.findall(m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def value(metrics, name, **labels):
    return metrics.get((name, frozenset(labels.items())), 0.0)


def curl(env, url, body=None):
    args = ["curl", "-sS", "--proxy", f"http://127.0.0.1:{env['proxy']}", "--cacert", env["bundle"], "-o",
            "/dev/null", "-w", "%{http_code}"]
    if body is not None:
        args += ["--data-binary", body, "-H", "Content-Type: text/plain"]
    r = subprocess.run(args + [url], capture_output=True, text=True, timeout=60)
    return int(r.stdout or 0)


def store_verdicts(pb, env, paths, timeout=20):
    stub = pb.store_grpc.VerdictQueryStub(grpc.insecure_channel(env["store"]))
    deadline = time.time() + timeout
    while True:
        found = {v.path: v for v in stub.Query(pb.store.QueryRequest(page_size=1000), timeout=30).verdicts
                 if v.path in paths}
        if len(found) == len(paths) or time.time() > deadline:
            return found
        time.sleep(0.2)


def wait_for(env, pred, timeout=15):
    """Connections are counted when they close, a moment after the client saw its answer."""
    deadline = time.time() + timeout
    while True:
        m = scrape(env)
        if pred(m) or time.time() > deadline:
            return m
        time.sleep(0.1)


def delta(after, before, name, **labels):
    return value(after, name, **labels) - value(before, name, **labels)


def test_health_and_readiness(embedded):
    assert http_get(embedded, "/healthz")[:2] == (200, "ok\n")
    status, body, _ = http_get(embedded, "/readyz")
    assert (status, body) == (200, "ready\n")
    assert http_get(embedded, "/nope")[0] == 404
    req = urllib.request.Request(f"http://{embedded['admin']}/metrics", data=b"x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    assert e.value.code == 405


def test_counters_move_by_exactly_the_traffic(pb, embedded):
    env = embedded
    origin = env["origin"]
    before = scrape(env)
    n_allowed = 3
    paths = [f"/ok-{i}" for i in range(n_allowed)]
    for p in paths:
        assert curl(env, f"https://localhost:{origin.port}{p}", "nothing sensitive here\n") == 200
    assert curl(env, f"https://localhost:{origin.port}/card", f"customer card {CARD}\n") == 403
    # 127.0.0.1 is not on the allow-list (only "localhost" is): the CONNECT is refused.
    assert curl(env, f"https://127.0.0.1:{origin.port}/denied") != 200

    M = "egressguard_connections_total"
    after = wait_for(env, lambda m: delta(m, before, M, mode="bump", outcome="ok") >= n_allowed and
                     delta(m, before, M, mode="bump", outcome="blocked") >= 1 and
                     delta(m, before, M, mode="refuse", outcome="refused") >= 1)
    assert delta(after, before, M, mode="bump", outcome="ok") == n_allowed
    assert delta(after, before, M, mode="bump", outcome="blocked") == 1
    assert delta(after, before, M, mode="refuse", outcome="refused") == 1
    total = sum(v - value(before, k[0], **dict(k[1])) for k, v in after.items() if k[0] == M)
    assert total == n_allowed + 2

    V = "egressguard_verdicts_total"
    assert delta(after, before, V, mode="bump", action="allow") == n_allowed
    assert delta(after, before, V, mode="bump", action="block") == 1
    assert delta(after, before, V, mode="refuse", action="block") == 1

    # Findings and bytes agree with what the store recorded for the same requests.
    verdicts = store_verdicts(pb, env, set(paths + ["/card"]))
    assert len(verdicts) == n_allowed + 1
    card = verdicts["/card"]
    categories = {}
    for f in card.findings:
        key = (f.category, pb.rules.Action.Name(f.action).lower())
        categories[key] = categories.get(key, 0) + 1
    assert ("credit_card", "block") in categories
    for (category, action), n in categories.items():
        assert delta(after, before, "egressguard_findings_total", category=category, action=action) == n
    assert sum(delta(after, before, k[0], **dict(k[1])) for k in after if k[0] == "egressguard_findings_total") == \
        len(card.findings)
    sent = sum(v.bytes_out for v in verdicts.values())
    received = sum(v.bytes_in for v in verdicts.values())
    assert sent > 0 and received > 0
    D = "egressguard_destination_bytes_total"
    assert delta(after, before, D, destination="localhost", direction="out") == sent
    assert delta(after, before, D, destination="localhost", direction="in") == received
    W = "egressguard_workload_requests_total"
    assert delta(after, before, W, workload="unmapped", destination="localhost") == n_allowed + 1
    assert delta(after, before, "egressguard_workload_bytes_total", workload="unmapped", destination="localhost",
                 direction="out") == sent

    # Four bumped connections: each minted (or found) one leaf.
    L = "egressguard_leaf_cache_lookups_total"
    assert delta(after, before, L, result="hit") + delta(after, before, L, result="miss") == n_allowed + 1
    # Every bumped request was scanned: URL, header block and body per transaction.
    assert delta(after, before, "egressguard_dlp_scans_total") == 3 * (n_allowed + 1)
    assert delta(after, before, "egressguard_dlp_scan_bytes_total") >= n_allowed * len("nothing sensitive here\n")
    assert delta(after, before, "egressguard_dlp_scan_seconds_total") > 0

    active = [dict(k[1])["version"] for k, v in after.items() if k[0] == "egressguard_rule_pack_active" and v == 1]
    assert active == [card.rule_pack_version]
    assert delta(after, before, "egressguard_fail_events_total", policy="closed", cause="engine_unavailable") == 0
    assert ("egressguard_spool_depth", frozenset()) in after
    assert ("egressguard_spool_oldest_age_seconds", frozenset()) in after
    # The store (same process) ingested the verdicts: its lag gauge is there and small.
    lag = wait_for(env, lambda m: ("egressguard_store_ingest_lag_seconds", frozenset()) in m)
    assert 0 <= value(lag, "egressguard_store_ingest_lag_seconds") < 120
    # The connection id is in the verdict ("<instance>-<n>").
    assert re.fullmatch(r"[0-9a-f]{8}-\d+", card.connection_id), card.connection_id


def proxy_v2(src, src_port, dst="127.0.0.1", dst_port=3128):
    sig = b"\r\n\r\n\x00\r\nQUIT\n"
    body = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack(">HH", src_port, dst_port)
    return sig + bytes([0x21, 0x11]) + struct.pack(">H", len(body)) + body


def post_through(env, header, path, body=b"hello\n"):
    """PROXY v2 header, CONNECT, TLS through the bumped tunnel, one POST; returns the status."""
    s = socket.create_connection(("127.0.0.1", env["proxy"]), timeout=15)
    try:
        host = f"localhost:{env['origin'].port}"
        s.sendall(header + f"CONNECT {host} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        resp = b""
        while b"\r\n\r\n" not in resp:
            chunk = s.recv(4096)
            if not chunk:
                raise ConnectionError(f"closed during CONNECT: {resp!r}")
            resp += chunk
        assert resp.startswith(b"HTTP/1.1 200"), resp
        ctx = ssl.create_default_context(cafile=env["bundle"])
        with ctx.wrap_socket(s, server_hostname="localhost") as t:
            t.sendall(f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len(body)}\r\n"
                      "Connection: close\r\n\r\n".encode() + body)
            out = b""
            while True:
                chunk = t.recv(65536)
                if not chunk:
                    break
                out += chunk
            return int(out.split(b" ", 2)[1])
    finally:
        s.close()


@pytest.fixture()
def proxied(egressguard_bin, workdir):
    config = os.path.join(workdir, "proxy-protocol.yaml")
    with open(config, "w") as f:
        f.write("proxy:\n"
                "  proxy_protocol: true\n"
                "  proxy_protocol_peers: [127.0.0.1/32]\n"
                "  workloads:\n"
                "    - workload: payments\n"
                "      cidrs: [127.0.0.8/29]\n"
                "    - workload: web\n"
                "      cidrs: [127.0.0.0/8]\n")
    proc, env = start_run(egressguard_bin, workdir, Pki(workdir), "--config", config)
    yield env
    stop_run(proc, env)


def test_proxy_protocol_v2_names_client_and_workload(pb, proxied):
    env = proxied
    before = scrape(env)
    assert post_through(env, proxy_v2("127.0.0.9", 40001), "/pp-payments") == 200
    assert post_through(env, proxy_v2("127.0.0.77", 40002), "/pp-web") == 200
    verdicts = store_verdicts(pb, env, {"/pp-payments", "/pp-web"})
    assert verdicts["/pp-payments"].workload == "payments"
    assert verdicts["/pp-payments"].client_address == "127.0.0.9:40001"
    assert verdicts["/pp-web"].workload == "web"
    assert verdicts["/pp-web"].client_address == "127.0.0.77:40002"
    after = wait_for(env, lambda m: delta(m, before, "egressguard_connections_total", mode="bump", outcome="ok") >= 2)
    W = "egressguard_workload_requests_total"
    assert delta(after, before, W, workload="payments", destination="localhost") == 1
    assert delta(after, before, W, workload="web", destination="localhost") == 1


def test_malformed_proxy_header_is_refused_and_proxy_keeps_serving(pb, proxied):
    env = proxied
    before = scrape(env)
    # A client that skips the header; then one whose header lies about its length.
    for bad in (b"CONNECT localhost:443 HTTP/1.1\r\nHost: localhost\r\n\r\n",
                proxy_v2("127.0.0.9", 1)[:14] + struct.pack(">H", 5) + b"\x00" * 5):
        s = socket.create_connection(("127.0.0.1", env["proxy"]), timeout=15)
        s.sendall(bad)
        try:
            got = s.recv(4096)
        except ConnectionResetError:
            got = b""
        s.close()
        assert got == b"", f"the proxy answered a connection without a valid PROXY header: {got!r}"
    assert post_through(env, proxy_v2("127.0.0.10", 40003), "/pp-after") == 200
    after = wait_for(env, lambda m: delta(m, before, "egressguard_connections_total", mode="plain",
                                          outcome="proxy_protocol_invalid") >= 2)
    assert delta(after, before, "egressguard_connections_total", mode="plain", outcome="proxy_protocol_invalid") == 2
    assert store_verdicts(pb, env, {"/pp-after"})["/pp-after"].workload == "payments"
    assert any("PROXY" in line and "conn=" in line for line in env["stderr"]), "".join(env["stderr"])[-2000:]


def test_proxy_header_from_an_untrusted_peer_is_refused(pb, proxied):
    env = proxied
    # 127.0.0.2 may use the proxy (client_cidrs) but is not a trusted redirector, so it
    # cannot choose the client address that is judged and accounted.
    s = socket.create_connection(("127.0.0.1", env["proxy"]), timeout=15, source_address=("127.0.0.2", 0))
    s.sendall(proxy_v2("127.0.0.9", 40009) + b"CONNECT localhost:443 HTTP/1.1\r\nHost: localhost\r\n\r\n")
    try:
        got = s.recv(4096)
    except ConnectionResetError:
        got = b""
    s.close()
    assert got == b""
    deadline = time.time() + 10  # the refusal is logged as the connection closes
    while time.time() < deadline and not any("not a trusted PROXY protocol sender" in l for l in env["stderr"]):
        time.sleep(0.1)
    assert any("not a trusted PROXY protocol sender" in l for l in env["stderr"]), "".join(env["stderr"])[-2000:]


def test_proxy_command_admin_readiness_follows_the_engine(egressguard_bin, workdir):
    from proxy_helpers import Proxy
    pki = Pki(workdir)
    admin_port = free_port()
    proxy = Proxy(egressguard_bin, pki, workdir, "--no-rules", "--admin-listen", f"127.0.0.1:{admin_port}")
    try:
        env = {"admin": f"127.0.0.1:{admin_port}"}
        status, body, _ = http_get(env, "/readyz")
        assert status == 503 and "rules: no compiled rule pack" in body, (status, body)
        assert http_get(env, "/healthz")[0] == 200
        m = scrape(env)
        assert not [k for k in m if k[0] == "egressguard_rule_pack_active"]
    finally:
        proxy.stop()
    admin_port = free_port()
    proxy = Proxy(egressguard_bin, pki, workdir, "--admin-listen", f"127.0.0.1:{admin_port}")
    try:
        env = {"admin": f"127.0.0.1:{admin_port}"}
        assert http_get(env, "/readyz")[:2] == (200, "ready\n")
        m = scrape(env)
        assert len([k for k, v in m.items() if k[0] == "egressguard_rule_pack_active" and v == 1]) == 1
    finally:
        proxy.stop()
