"""Proxy + store end to end through `egressguard run` (the embedded default): a curl
request through the proxy becomes a verdict that an independent Python gRPC client
finds in the store (no raw PII in the store or spool files), and an officer's push +
activate changes the judgement of the next request with no failed request during
the swap."""
import glob
import http.client
import json
import os
import re
import ssl
import subprocess
import threading
import time

import grpc
import pytest

from proxy_helpers import Origin, Pki
from store_helpers import free_port, pb, read_run_banner  # noqa: F401

# Luhn-valid numbers that appear nowhere in the shipped pack (whose text cites the
# published test PANs), so finding them in a file could only mean leaked traffic.
CARD = "4539 1488 0343 6467"
CARD2 = "5425 2334 3010 9903"
BODY = f"customer card {CARD} and card {CARD2}\n"


@pytest.fixture()
def embedded(egressguard_bin, workdir):
    pki = Pki(workdir)
    origin = Origin(pki.good[1], pki.good[0])
    home = os.path.join(workdir, "home")
    store_port = free_port()
    proc = subprocess.Popen([egressguard_bin, "run", "--home", home, "--proxy-listen", "127.0.0.1:0",
                             "--store-listen", f"127.0.0.1:{store_port}", "--upstream-ca",
                             pki.path("origin-root.pem"), "--allow", "localhost", "--initial-mode", "enforce",
                             "--workers", "2", "--admin-listen", "",  # run's default admin port 9090 may be taken
                             "--console-listen", "127.0.0.1:0"],  # and so its console port 8443
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    port, _, seen = read_run_banner(proc)
    if port is None:
        proc.kill()
        pytest.fail("egressguard run did not start: " + seen + proc.stderr.read())
    console = None
    for _ in range(10):  # the banner's console line follows the proxy line
        m = re.search(r"console\s+https://(127\.0\.0\.1:\d+)", proc.stdout.readline())
        if m:
            console = m.group(1)
            break
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
    yield {"proxy": port, "store": f"127.0.0.1:{store_port}", "home": home, "origin": origin,
           "bundle": os.path.join(home, "ca-bundle.pem"), "console": console}
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
    origin.close()


def curl(env, path, body):
    r = subprocess.run(["curl", "-sS", "--proxy", f"http://127.0.0.1:{env['proxy']}", "--cacert", env["bundle"],
                        "-o", "/dev/null", "-w", "%{http_code}", "--data-binary", body, "-H",
                        "Content-Type: text/plain", f"https://localhost:{env['origin'].port}{path}"],
                       capture_output=True, text=True, timeout=60)
    return int(r.stdout or 0)


def find_verdict(pb, store, path, timeout=20):
    stub = pb.store_grpc.VerdictQueryStub(grpc.insecure_channel(store))
    deadline = time.time() + timeout
    while time.time() < deadline:
        for v in stub.Query(pb.store.QueryRequest(page_size=1000), timeout=30).verdicts:
            if v.path == path:
                return v
        time.sleep(0.2)
    raise AssertionError(f"no verdict for {path} in the store")


def test_curl_through_proxy_lands_in_store_without_raw_pii(pb, embedded):
    assert curl(embedded, "/store-e2e", BODY) == 403
    v = find_verdict(pb, embedded["store"], "/store-e2e")
    assert v.action == pb.rules.BLOCK and v.enforced and v.host == "localhost"
    assert any(f.category == "credit_card" for f in v.findings)
    active = pb.rule_admin_grpc.RuleAdminStub(grpc.insecure_channel(embedded["store"])).Get(
        pb.rule_admin.GetPackRequest(), timeout=30)
    assert v.rule_pack_version == active.info.version
    # The raw card numbers are nowhere in the store, its WAL, or the spool.
    for path in glob.glob(os.path.join(embedded["home"], "*.db*")):
        with open(path, "rb") as f:
            data = f.read()
        for raw in (CARD.encode(), CARD.replace(" ", "").encode(), CARD2.encode(), CARD2.replace(" ", "").encode()):
            assert raw not in data, f"raw PII in {path}"


def test_officer_push_activate_changes_next_request_without_failures(pb, embedded):
    channel = grpc.insecure_channel(embedded["store"])  # loopback dev default: every role
    admin = pb.rule_admin_grpc.RuleAdminStub(channel)
    assert curl(embedded, "/canary-before", "ticket EGRESS-424242 attached\n") == 200

    pack = admin.Get(pb.rule_admin.GetPackRequest(), timeout=30).pack
    pack.version = pack.version + "+canary"
    pack.rules.add(id="it.canary", version=1, category="canary", patterns=["EGRESS-[0-9]{6}"],
                   action=pb.rules.BLOCK, severity=pb.rules.HIGH, enabled=True, description="test canary")
    admin.Push(pb.rule_admin.PushRequest(pack=pack, reason="integration test"), timeout=60)

    codes, stop = [], threading.Event()

    def traffic():
        i = 0
        while not stop.is_set():
            codes.append(curl(embedded, f"/during-{i}", "nothing sensitive here\n"))
            i += 1

    t = threading.Thread(target=traffic)
    t.start()
    try:
        time.sleep(0.5)
        admin.Activate(pb.rule_admin.ActivateRequest(version=pack.version, mode=pb.rule_admin.ENFORCE,
                                                     reason="integration test"), timeout=60)
        deadline = time.time() + 30
        blocked = False
        n = 0
        while time.time() < deadline and not blocked:
            n += 1
            blocked = curl(embedded, f"/canary-after-{n}", "ticket EGRESS-424242 attached\n") == 403
        time.sleep(0.5)
    finally:
        stop.set()
        t.join()
    assert blocked, "the activated pack never took effect"
    assert codes and all(c == 200 for c in codes), codes
    v = find_verdict(pb, embedded["store"], f"/canary-after-{n}")
    assert v.rule_pack_version == pack.version
    assert any(f.rule_id == "it.canary" for f in v.findings)


def test_activation_mode_switches_enforcement_without_restart(pb, embedded):
    admin = pb.rule_admin_grpc.RuleAdminStub(grpc.insecure_channel(embedded["store"]))
    version = admin.Get(pb.rule_admin.GetPackRequest(), timeout=30).info.version
    assert curl(embedded, "/mode-enforce", BODY) == 403
    # The same pack in monitor mode: the proxy forwards and records instead of blocking.
    admin.Activate(pb.rule_admin.ActivateRequest(version=version, mode=pb.rule_admin.MONITOR,
                                                 reason="integration test: monitor"), timeout=60)
    deadline = time.time() + 30
    code = 403
    n = 0
    while time.time() < deadline and code == 403:
        n += 1
        code = curl(embedded, f"/mode-monitor-{n}", BODY)
    assert code == 200, "monitor mode never took effect"
    v = find_verdict(pb, embedded["store"], f"/mode-monitor-{n}")
    assert not v.enforced and any(f.category == "credit_card" for f in v.findings)


def test_runs_console_signs_in_with_a_link_over_the_dev_ca(embedded, egressguard_bin):
    # The console `run` turns on: its banner names it, `console login --home` signs a
    # link, and the browser's request (trusting the dev CA bundle) gets the session.
    assert embedded["console"], "run's banner has no console line"
    url = f"https://{embedded['console']}"
    r = subprocess.run([egressguard_bin, "console", "login", "--home", embedded["home"], "--user", "olga", "--role",
                        "officer", "--url", url], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith(url + "/login?t="), r.stdout + r.stderr
    host, port = embedded["console"].split(":")
    tls = ssl.create_default_context(cafile=embedded["bundle"])
    conn = http.client.HTTPSConnection(host, int(port), context=tls, timeout=60)
    conn.request("GET", r.stdout.strip()[len(url):])
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 303, resp.status
    cookie = resp.getheader("Set-Cookie").split(";")[0]
    conn.request("GET", "/api/v1/session", headers={"Cookie": cookie})
    resp = conn.getresponse()
    session = json.loads(resp.read())
    assert resp.status == 200 and session["user"] == "olga" and session["role"] == "officer", session
    conn.close()
