"""The compliance store through independent clients: Python grpcio (stubs generated
from the .proto at test time), generic calls for health and reflection, and the
egressguard CLI. mTLS on loopback with role certificates from `ca issue-client`."""
import json
import os
import subprocess
import time

import grpc
import pytest

from conftest import run
from store_helpers import Certs, StoreProcess, free_port, make_verdict, pb, report  # noqa: F401


@pytest.fixture()
def tls_store(egressguard_bin, workdir):
    certs = Certs(egressguard_bin, workdir)
    store = StoreProcess(egressguard_bin, os.path.join(workdir, "store.db"), free_port(), certs.store_flags()).start()
    yield store, certs
    store.stop()


def test_python_client_ingests_and_queries(pb, tls_store, egressguard_bin):
    store, certs = tls_store
    verdicts = [make_verdict(pb, f"py-{i}", host="a.example" if i % 2 else "b.example",
                             category="iban" if i % 3 == 0 else "", action=pb.rules.BLOCK if i % 5 == 0 else pb.rules.ALERT,
                             seconds=1_700_000_000 + i) for i in range(250)]
    acked = report(pb, certs.channel(store.address, "appliance"), verdicts)
    assert sorted(acked) == sorted(v.id for v in verdicts)
    # A retry of the same verdicts is acked and stored nowhere twice.
    assert len(report(pb, certs.channel(store.address, "appliance"), verdicts[:40])) == 40

    officer = pb.store_grpc.VerdictQueryStub(certs.channel(store.address, "officer"))
    seen, token = [], ""
    while True:
        page = officer.Query(pb.store.QueryRequest(page_size=100, page_token=token), timeout=30)
        seen += [v.id for v in page.verdicts]
        token = page.next_page_token
        if not token:
            break
    assert sorted(seen) == sorted(v.id for v in verdicts)

    filt = pb.store.VerdictFilter(host="a.example", category="iban")
    got = officer.Query(pb.store.QueryRequest(filter=filt, page_size=1000), timeout=30)
    expected = {v.id for v in verdicts if v.host == "a.example" and any(f.category == "iban" for f in v.findings)}
    assert {v.id for v in got.verdicts} == expected and expected

    stats = officer.Stats(pb.store.StatsRequest(group_by=pb.store.DESTINATION), timeout=30)
    rows = {r.key: r for r in stats.rows}
    assert rows["a.example"].verdicts == 125 and rows["a.example"].bytes_out == 125 * 1234

    # The CLI reads the same store: JSON for scripts, a table for people.
    r = run(egressguard_bin, "verdicts", "query", "--store", store.address, *certs.client_flags("auditor"),
            "--host", "b.example", "--action", "block", "--limit", "1000", "--json")
    assert r.returncode == 0, r.stderr
    ids = {v["id"] for v in json.loads(r.stdout)["verdicts"]}
    assert ids == {v.id for v in verdicts if v.host == "b.example" and v.action == pb.rules.BLOCK}
    r = run(egressguard_bin, "verdicts", "stats", "--store", store.address, *certs.client_flags("officer"),
            "--by", "category")
    assert r.returncode == 0, r.stderr
    assert "iban" in r.stdout and "(none)" in r.stdout

    r = run(egressguard_bin, "audit", "verify", "--store", store.address, *certs.client_flags("auditor"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ok: 250 verdicts" in r.stdout


def test_wrong_role_is_refused_and_audited(pb, tls_store, egressguard_bin):
    store, certs = tls_store
    appliance = certs.channel(store.address, "appliance")
    with pytest.raises(grpc.RpcError) as e:
        pb.store_grpc.VerdictQueryStub(appliance).Query(pb.store.QueryRequest(), timeout=30)
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    auditor = certs.channel(store.address, "auditor")
    pack = pb.rules.RulePack(name="t", version="it.1")
    pack.rules.add(id="r1", category="email", patterns=["[a-z]+@[a-z]+"], action=pb.rules.ALERT)
    with pytest.raises(grpc.RpcError) as e:
        pb.rule_admin_grpc.RuleAdminStub(auditor).Push(pb.rule_admin.PushRequest(pack=pack, reason="x"), timeout=30)
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # The officer CLI with an appliance certificate: refused, exit 2.
    r = run(egressguard_bin, "rules", "list", "--store", store.address, *certs.client_flags("appliance"))
    assert r.returncode == 2 and "PERMISSION_DENIED" in r.stderr

    denied = pb.audit_grpc.AuditStub(auditor).List(pb.audit.AuditListRequest(denied_only=True), timeout=30)
    methods = [(rec.method, rec.actor) for rec in denied.records]
    assert ("/egressguard.v1.VerdictQuery/Query",
            "test-appliance spiffe://egressguard/role/appliance") in methods
    assert ("/egressguard.v1.RuleAdmin/Push", "test-auditor spiffe://egressguard/role/auditor") in methods
    assert ("/egressguard.v1.RuleAdmin/List", "test-appliance spiffe://egressguard/role/appliance") in methods
    r = run(egressguard_bin, "audit", "list", "--denied", "--store", store.address, *certs.client_flags("auditor"))
    assert r.returncode == 0 and "DENIED" in r.stdout


def test_no_client_certificate_no_connection(pb, tls_store):
    store, certs = tls_store
    with open(certs.ca, "rb") as ca:
        channel = grpc.secure_channel(store.address, grpc.ssl_channel_credentials(ca.read()))
    with pytest.raises(grpc.RpcError) as e:
        pb.store_grpc.VerdictQueryStub(channel).Query(pb.store.QueryRequest(), timeout=10)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE


def test_officer_pushes_activates_rolls_back(pb, tls_store, egressguard_bin, workdir):
    store, certs = tls_store
    officer = certs.client_flags("officer")
    for version, pattern in (("it.1", "secret-[0-9]{4}"), ("it.2", "secret-[0-9]{4,8}")):
        path = os.path.join(workdir, f"{version}.yaml")
        with open(path, "w") as f:
            f.write(f"name: it\nversion: \"{version}\"\nrules:\n  - id: it.secret\n    category: credential\n"
                    f"    patterns: ['{pattern}']\n    action: block\n    severity: high\n")
        r = run(egressguard_bin, "rules", "push", path, "--reason", f"ticket {version}", "--store", store.address,
                *officer)
        assert r.returncode == 0, r.stderr
    r = run(egressguard_bin, "rules", "activate", "it.1", "--mode", "enforce", "--store", store.address, *officer)
    assert r.returncode == 0, r.stderr
    r = run(egressguard_bin, "rules", "activate", "it.2", "--store", store.address, *officer)
    assert r.returncode == 0, r.stderr
    r = run(egressguard_bin, "rules", "diff", "it.1", "it.2", "--store", store.address, *officer)
    assert r.returncode == 1 and "~ it.secret (patterns)" in r.stdout, r.stdout + r.stderr
    r = run(egressguard_bin, "rules", "rollback", "--reason", "too wide", "--store", store.address, *officer)
    assert r.returncode == 0 and "it.1 ACTIVE enforce" in r.stdout, r.stdout + r.stderr
    r = run(egressguard_bin, "rules", "get", "--store", store.address, *officer)
    assert r.returncode == 0 and "it.1" in r.stdout and "secret-[0-9]{4}" in r.stdout
    # A pack the engine cannot compile is refused at push, with the reason.
    bad = os.path.join(workdir, "bad.yaml")
    with open(bad, "w") as f:
        f.write("name: it\nversion: \"it.3\"\nrules:\n  - id: it.bad\n    category: x\n"
                "    patterns: ['(unclosed']\n    action: block\n")
    r = run(egressguard_bin, "rules", "push", bad, "--reason", "x", "--store", store.address, *officer)
    assert r.returncode == 2
    r = run(egressguard_bin, "rules", "list", "--json", "--store", store.address, *officer)
    assert [p["version"] for p in json.loads(r.stdout)["packs"]] == ["it.2", "it.1"]
    # Every change is in the audit trail with the officer's identity.
    auditor = pb.audit_grpc.AuditStub(certs.channel(store.address, "auditor"))
    recs = auditor.List(pb.audit.AuditListRequest(actor="test-officer spiffe://egressguard/role/officer"), timeout=30)
    details = [r.detail for r in recs.records]
    assert any(d.startswith("pushed rule pack it.1") and "ticket it.1" in d for d in details)
    assert any(d.startswith("activated rule pack it.1 in enforce mode") for d in details)
    assert any(d.startswith("rolled back from it.2 to rule pack it.1") for d in details)


def test_health_and_reflection_without_proto_files(tls_store):
    store, certs = tls_store
    channel = certs.channel(store.address, "auditor")
    ident = lambda b: b  # noqa: E731  raw bytes: no generated code for these services
    check = channel.unary_unary("/grpc.health.v1.Health/Check", request_serializer=ident,
                                response_deserializer=ident)
    assert check(b"", timeout=10) == b"\x08\x01"  # HealthCheckResponse{status: SERVING}
    info = channel.stream_stream("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                                 request_serializer=ident, response_deserializer=ident)
    reply = b"".join(info(iter([b"\x3a\x00"]), timeout=10))  # list_services: ""
    for service in (b"egressguard.v1.VerdictIngest", b"egressguard.v1.VerdictQuery", b"egressguard.v1.RuleAdmin",
                    b"egressguard.v1.Audit", b"grpc.health.v1.Health"):
        assert service in reply


def health_status(channel, service):
    """grpc.health.v1.Health/Check for `service` by hand (no generated code): the status enum."""
    ident = lambda b: b  # noqa: E731
    check = channel.unary_unary("/grpc.health.v1.Health/Check", request_serializer=ident,
                                response_deserializer=ident)
    name = service.encode()
    request = (b"\x0a" + bytes([len(name)]) + name) if name else b""
    reply = check(request, timeout=10)
    return reply[1] if len(reply) == 2 and reply[0] == 0x08 else 0  # field 1 varint; absent = UNKNOWN (0)


def test_health_per_service_follows_the_database(egressguard_bin, workdir):
    db = os.path.join(workdir, "health.db")
    store = StoreProcess(egressguard_bin, db, free_port()).start()
    channel = grpc.insecure_channel(store.address)
    services = ["egressguard.v1.VerdictIngest", "egressguard.v1.VerdictQuery", "egressguard.v1.RuleAdmin",
                "egressguard.v1.Audit", ""]
    deadline = time.time() + 10
    while time.time() < deadline and any(health_status(channel, s) != 1 for s in services):
        time.sleep(0.1)
    assert [health_status(channel, s) for s in services] == [1] * 5  # SERVING, each by name
    with pytest.raises(grpc.RpcError) as e:
        health_status(channel, "egressguard.v1.NoSuchService")
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    # The database file removed under the running store: what it commits now would be
    # gone at the next start, so every service says NOT_SERVING (2).
    os.rename(db, db + ".moved")
    deadline = time.time() + 10
    while time.time() < deadline and health_status(channel, "egressguard.v1.VerdictIngest") != 2:
        time.sleep(0.1)
    assert [health_status(channel, s) for s in services] == [2] * 5
    os.rename(db + ".moved", db)
    deadline = time.time() + 10
    while time.time() < deadline and health_status(channel, "") != 1:
        time.sleep(0.1)
    assert health_status(channel, "") == 1
    store.stop()


def test_stats_per_workload_and_destination(pb, tls_store, egressguard_bin):
    store, certs = tls_store
    verdicts = []
    for i in range(60):
        v = make_verdict(pb, f"wl-{i}", host=["s3.example", "api.example", "s3.example"][i % 3])
        v.workload = ["payments/api", "web/frontend", ""][i % 4 % 3]
        v.bytes_out, v.bytes_in = 1000 + i, i
        verdicts.append(v)
    report(pb, certs.channel(store.address, "appliance"), verdicts)
    officer = pb.store_grpc.VerdictQueryStub(certs.channel(store.address, "officer"))

    def expected(key):
        out = {}
        for v in verdicts:
            k = key(v)
            n, b_out, b_in = out.get(k, (0, 0, 0))
            out[k] = (n + 1, b_out + v.bytes_out, b_in + v.bytes_in)
        return out

    got = officer.Stats(pb.store.StatsRequest(group_by=pb.store.WORKLOAD), timeout=30)
    assert {r.key: (r.verdicts, r.bytes_out, r.bytes_in) for r in got.rows} == expected(lambda v: v.workload)
    assert all(r.workload == r.key for r in got.rows)
    got = officer.Stats(pb.store.StatsRequest(group_by=pb.store.WORKLOAD_DESTINATION), timeout=30)
    assert {(r.workload, r.host): (r.verdicts, r.bytes_out, r.bytes_in) for r in got.rows} == \
        expected(lambda v: (v.workload, v.host))
    assert all(r.key == f"{r.workload}|{r.host}" for r in got.rows)

    r = run(egressguard_bin, "verdicts", "stats", "--store", store.address, *certs.client_flags("officer"),
            "--group-by", "workload-destination", "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)["rows"]
    want = expected(lambda v: (v.workload, v.host))
    assert {(x.get("workload", ""), x.get("host", "")): int(x["verdicts"]) for x in rows} == \
        {k: n for k, (n, _, _) in want.items()}
    r = run(egressguard_bin, "verdicts", "stats", "--store", store.address, *certs.client_flags("officer"),
            "--group-by", "workload")
    assert r.returncode == 0, r.stderr
    line = next(x for x in r.stdout.splitlines() if x.startswith("payments/api"))
    n, b_out, b_in = expected(lambda v: v.workload)["payments/api"]
    assert line.split()[1:] == [str(n), str(b_out), str(b_in)]


def test_plaintext_refused_off_loopback(egressguard_bin, workdir):
    r = run(egressguard_bin, "store", "--listen", "0.0.0.0:0", "--db", os.path.join(workdir, "s.db"), timeout=30)
    assert r.returncode == 2
    assert "refusing to serve plaintext on 0.0.0.0:0" in r.stderr
