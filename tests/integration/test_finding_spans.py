"""Every occurrence, located, end to end: a request through `egressguard run` (proxy +
store) whose body holds several occurrences becomes a verdict whose findings carry
their spans (offsets in the body, redacted evidence), up to `rules.max_finding_spans`
from the config file; the store keeps them (the hash chain still verifies), `verdicts
show ID` prints them (text and --json), and no raw value is anywhere in the store,
spool, or the CLI's output."""
import glob
import json
import os
import subprocess
import threading

import pytest

from proxy_helpers import Origin, Pki
from store_helpers import free_port, pb, read_run_banner  # noqa: F401
from test_store_proxy import curl, find_verdict

# Luhn-valid numbers that appear nowhere in the shipped pack.
CARDS = ["4539 1488 0343 6467", "5425-2334-3010-9903", "4916338506082832"]
LIMIT = 4


def body_and_offsets():
    """3 distinct cards, the first one twice (4 occurrences), and 6 distinct e-mails."""
    body, at = "", []
    for i, card in enumerate(CARDS + CARDS[:1]):
        body += f"row {i}: card "
        at.append((len(body), len(body) + len(card), card))
        body += card + "\n"
    mails = [f"customer{i}@acme-corp.ch" for i in range(6)]
    for m in mails:
        body += f"contact {m}\n"
    return body, at, mails


def raw_values(mails):
    out = set(mails)
    for c in CARDS:
        digits = c.replace(" ", "").replace("-", "")
        out |= {c, digits, digits[4:12]}
    return out


@pytest.fixture()
def embedded(egressguard_bin, workdir):
    pki = Pki(workdir)
    origin = Origin(pki.good[1], pki.good[0])
    home = os.path.join(workdir, "home")
    config = os.path.join(workdir, "spans.yaml")
    with open(config, "w") as f:
        f.write(f"rules:\n  max_finding_spans: {LIMIT}\n")
    store_port = free_port()
    proc = subprocess.Popen([egressguard_bin, "run", "--config", config, "--home", home, "--proxy-listen",
                             "127.0.0.1:0", "--store-listen", f"127.0.0.1:{store_port}", "--upstream-ca",
                             pki.path("origin-root.pem"), "--allow", "localhost", "--initial-mode", "monitor",
                             "--workers", "2", "--admin-listen", "", "--console-listen", "127.0.0.1:0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    port, _, seen = read_run_banner(proc)
    if port is None:
        proc.kill()
        pytest.fail("egressguard run did not start: " + seen + proc.stderr.read())
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
    yield {"proxy": port, "store": f"127.0.0.1:{store_port}", "home": home, "origin": origin,
           "bundle": os.path.join(home, "ca-bundle.pem")}
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
    origin.close()


def cli(binary, store, *args):
    r = subprocess.run([binary, *args, "--store", store], capture_output=True, text=True, timeout=120)
    return r


def test_verdict_spans_in_store_and_verdicts_show(pb, egressguard_bin, embedded):
    body, at, mails = body_and_offsets()
    assert curl(embedded, "/spans-e2e", body) == 200  # monitor: forwarded and recorded
    v = find_verdict(pb, embedded["store"], "/spans-e2e")

    # The store's copy, through the gRPC API.
    cards = [f for f in v.findings if f.category == "credit_card"]
    assert len(cards) == 1, v
    card = cards[0]
    assert card.count == 3  # distinct values, as before
    assert [(s.start, s.end) for s in card.spans] == [(a, b) for a, b, _ in at]
    assert not card.spans_truncated
    assert card.spans[0].evidence == card.evidence and card.spans[3].evidence == card.evidence
    assert card.spans[0].fingerprint == card.spans[3].fingerprint != card.spans[1].fingerprint
    for s in card.spans:
        assert s.member == ""
    mail = [f for f in v.findings if f.category == "email"][0]
    assert mail.count == 6 and len(mail.spans) == LIMIT and mail.spans_truncated  # the config key's limit
    assert [s.start for s in mail.spans] == [body.index(m) for m in mails[:LIMIT]]

    # verdicts show ID --json: the same verdict, spans included, in the protobuf JSON mapping.
    shown = cli(egressguard_bin, embedded["store"], "verdicts", "show", v.id, "--json")
    assert shown.returncode == 0, shown.stderr
    j = json.loads(shown.stdout)
    assert j["id"] == v.id
    jcard = [f for f in j["findings"] if f["category"] == "credit_card"][0]
    assert [(int(s["start"]), int(s["end"])) for s in jcard["spans"]] == [(a, b) for a, b, _ in at]
    assert all("evidence" in s for s in jcard["spans"])
    jmail = [f for f in j["findings"] if f["category"] == "email"][0]
    assert len(jmail["spans"]) == LIMIT and jmail["spans_truncated"] is True

    # Text: one line per occurrence under its finding.
    text = cli(egressguard_bin, embedded["store"], "verdicts", "show", v.id)
    assert text.returncode == 0, text.stderr
    for a, b, _ in at:
        assert f"occurrence {a}-{b} " in text.stdout, text.stdout
    assert "(more occurrences than listed)" in text.stdout

    missing = cli(egressguard_bin, embedded["store"], "verdicts", "show", "no-such-verdict")
    assert missing.returncode == 2 and "no verdict no-such-verdict" in missing.stderr

    # No raw value in what the CLI printed, nor in the store, its WAL, or the spool.
    for raw in raw_values(mails):
        assert raw not in shown.stdout and raw not in text.stdout, raw
    for path in glob.glob(os.path.join(embedded["home"], "*.db*")):
        with open(path, "rb") as f:
            data = f.read()
        for raw in raw_values(mails):
            assert raw.encode() not in data, f"raw value in {path}"

    # The hash chain covers the stored verdict with its spans and still verifies.
    verify = cli(egressguard_bin, embedded["store"], "audit", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_config_check_refuses_out_of_range_limit(egressguard_bin, workdir):
    for bad, why in (("257", "between 0 and 256"), ("-1", "must be an integer"), ("many", "must be an integer")):
        path = os.path.join(workdir, f"bad-{bad}.yaml")
        with open(path, "w") as f:
            f.write(f"rules:\n  max_finding_spans: {bad}\n")
        r = subprocess.run([egressguard_bin, "config", "check", path], capture_output=True, text=True, timeout=60)
        assert r.returncode == 2, r.stdout + r.stderr
        assert "rules.max_finding_spans" in r.stderr + r.stdout and why in r.stderr + r.stdout, r.stderr
    good = os.path.join(workdir, "good.yaml")
    with open(good, "w") as f:
        f.write("rules:\n  max_finding_spans: 0\n")
    r = subprocess.run([egressguard_bin, "config", "check", good], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_audit_log_carries_spans(egressguard_bin, workdir):
    """A standalone proxy's --audit-log line: each finding with its spans (protobuf JSON
    mapping), the limit from the config file, no raw value."""
    from proxy_helpers import Proxy
    pki = Pki(workdir)
    origin = Origin(pki.good[1], pki.good[0])
    config = os.path.join(workdir, "proxy.yaml")
    with open(config, "w") as f:
        f.write("rules:\n  max_finding_spans: 2\n")
    proxy = Proxy(egressguard_bin, pki, workdir, "--config", config, "--mode", "monitor", "--allow", "localhost")
    try:
        body, at, mails = body_and_offsets()
        r = subprocess.run(["curl", "-sS", "--proxy", f"http://127.0.0.1:{proxy.port}", "--cacert",
                            pki.path("cluster-ca.pem"), "-o", "/dev/null", "-w", "%{http_code}", "--data-binary", body,
                            "-H", "Content-Type: text/plain", f"https://localhost:{origin.port}/audit-spans"],
                           capture_output=True, text=True, timeout=60)
        assert r.stdout == "200", r.stderr
        v = proxy.wait_verdict(lambda v: v.get("path") == "/audit-spans" and v.get("findings"))
        card = [f for f in v["findings"] if f["category"] == "credit_card"][0]
        assert [(int(s["start"]), int(s["end"])) for s in card["spans"]] == [(a, b) for a, b, _ in at[:2]]
        assert card["spans_truncated"] is True
        with open(proxy.audit) as f:
            log = f.read()
        for raw in raw_values(mails):
            assert raw not in log, raw
    finally:
        proxy.stop()
        origin.close()
