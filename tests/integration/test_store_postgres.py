"""The compliance store on PostgreSQL (issue 22), with the real binary, a real
PostgreSQL server the test starts, a real origin and curl: `store migrate` creates the
schema (and refuses a database newer than the binary), two store replicas serve one
database, a pack activated through one replica reaches a proxy reporting to the other,
every request the client saw answered has exactly one verdict, `audit verify` passes
through either replica and finds a row edited in the database, and a password in the
URI is refused before anything connects."""
import os
import subprocess
import threading

import pytest

from conftest import run
from pg_helpers import PgServer, pg, skip_module_without_server  # noqa: F401 (pg: fixture)
from proxy_helpers import Origin, Pki
from store_helpers import (StoreProcess, StoreProxy, free_port, metric_value, pb,  # noqa: F401
                           push_and_activate, store_verdicts)

CARD = "4539 1488 0343 6467"  # Luhn-valid, absent from the shipped pack's text

skip_module_without_server()


def default_pack():
    return os.path.join(os.environ["EGRESSGUARD_SOURCE_DIR"], "rules", "default")


def replica(binary, uri, workdir, name):
    s = StoreProcess(binary, uri, free_port())
    s.log = os.path.join(workdir, f"{name}.log")
    return s.start()


def test_two_replicas_on_postgres_with_a_proxy(pb, egressguard_bin, workdir, pg):
    uri = pg.create_database("eg")
    r = run(egressguard_bin, "store", "migrate", "--db", uri)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "schema version 0 -> " in r.stdout
    r = run(egressguard_bin, "store", "migrate", "--db", uri)
    assert r.returncode == 0 and "is current" in r.stdout, r.stdout + r.stderr

    a = replica(egressguard_bin, uri, workdir, "store-a")
    b = replica(egressguard_bin, uri, workdir, "store-b")
    pki = Pki(workdir)
    origin = Origin(pki.good[1], pki.good[0])
    proxy = StoreProxy(egressguard_bin, pki, b.address, os.path.join(workdir, "spool.db"))
    try:
        # Activated through replica A; the proxy reports to and watches replica B.
        version = push_and_activate(egressguard_bin, a.address, default_pack(), "enforce")
        proxy.start()
        proxy.wait_metric(lambda m: metric_value(m, "egressguard_rule_pack_active", version=version) == 1,
                          what="the pack activated through the other replica")
        answered = {}

        def client(k):
            for i in range(10):
                path = f"/pg-{k}-{i}"
                body = f"card {CARD}\n" if i % 3 == 0 else "nothing to see\n"
                answered[path] = proxy.curl(pki, origin.port, path, body)

        threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert all(code in (200, 403) for code in answered.values()), answered
        assert sum(1 for p, c in answered.items() if c == 403) == 16  # i in {0, 3, 6, 9} of 4 clients
        # Every answered request has exactly one verdict, read through either replica.
        found = store_verdicts(pb, a.address, set(answered), timeout=60)
        assert set(found) == set(answered)
        for path, v in found.items():
            assert (v.action == pb.rules.BLOCK) == (answered[path] == 403), path
        ids = [v.id for v in found.values()]
        assert len(ids) == len(set(ids))
        for s in (a, b):
            r = run(egressguard_bin, "audit", "verify", "--store", s.address)
            assert r.returncode == 0, r.stdout + r.stderr
        # No raw card number in the database: a dump of every table holds none.
        dump = subprocess.run([os.path.join(pg.bindir, "pg_dump"), "-h", pg.dir, "-p", "5432", "-U", "postgres",
                               "eg"], capture_output=True, text=True, check=True, timeout=120).stdout
        assert "verdicts" in dump and CARD not in dump and CARD.replace(" ", "") not in dump
    finally:
        proxy.stop()
        origin.close()
        a.stop()
        b.stop()

    # An edit straight in the database is named by seq.
    pg.psql("eg", "UPDATE verdicts SET host = 'elsewhere.example' WHERE seq = 7")
    a.start()
    try:
        r = run(egressguard_bin, "audit", "verify", "--store", a.address)
        assert r.returncode == 1, r.stdout + r.stderr
        assert "verdicts seq 7: edited:" in r.stdout and "host" in r.stdout, r.stdout
    finally:
        a.stop()


def test_refusals(egressguard_bin, workdir, pg):
    uri = pg.create_database("eg2")
    with_password = uri.replace("postgres@", "postgres:hunter2@")
    r = run(egressguard_bin, "store", "--listen", f"127.0.0.1:{free_port()}", "--db", with_password)
    assert r.returncode != 0
    assert "PGPASSFILE" in r.stderr and "hunter2" not in r.stderr + r.stdout, r.stderr
    r = run(egressguard_bin, "store", "migrate", "--db", with_password)
    assert r.returncode != 0 and "PGPASSFILE" in r.stderr, r.stderr
    assert run(egressguard_bin, "store", "migrate", "--db", uri).returncode == 0
    pg.psql("eg2", "UPDATE schema_version SET version = version + 1")
    r = run(egressguard_bin, "store", "migrate", "--db", uri)
    assert r.returncode != 0 and "newer than this build" in r.stderr, r.stdout + r.stderr


def test_migrate_copies_a_sqlite_store(pb, egressguard_bin, workdir, pg):
    db = os.path.join(workdir, "old.db")
    store = StoreProcess(egressguard_bin, db, free_port()).start()
    try:
        version = push_and_activate(egressguard_bin, store.address, default_pack(), "monitor")
    finally:
        store.stop()
    uri = pg.create_database("eg3")
    r = run(egressguard_bin, "store", "migrate", "--from", db, "--to", uri)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "copied 0 verdicts, 2 audit records, 1 rule packs; both chains verify" in r.stdout, r.stdout
    s = replica(egressguard_bin, uri, workdir, "store-copy")
    try:
        out = subprocess.run([egressguard_bin, "rules", "list", "--store", s.address], capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 0 and version in out.stdout, out.stdout + out.stderr
        r = run(egressguard_bin, "audit", "verify", "--store", s.address)
        assert r.returncode == 0, r.stdout + r.stderr
    finally:
        s.stop()
    r = run(egressguard_bin, "store", "migrate", "--from", db, "--to", uri)
    assert r.returncode != 0 and "empty" in r.stderr, r.stdout + r.stderr


def test_console_on_postgres_keeps_its_key_in_the_console_dir(egressguard_bin, workdir, pg):
    # A PostgreSQL store has no file to keep the console's sign-in key beside: the console
    # is refused without --console-dir, and with it the key is there (0600) and `console
    # login --dir` signs a link with it.
    uri = pg.create_database("eg3")
    assert run(egressguard_bin, "store", "migrate", "--db", uri).returncode == 0
    pki = Pki(workdir)
    key, crt = pki.good
    args = ["store", "--listen", f"127.0.0.1:{free_port()}", "--db", uri, "--tls-cert", crt, "--tls-key", key,
            "--client-ca", pki.path("origin-root.pem"), "--console-listen", "127.0.0.1:0"]
    r = run(egressguard_bin, *args)
    assert r.returncode != 0 and "needs --console-dir DIR" in r.stderr, r.stdout + r.stderr
    console_dir = os.path.join(workdir, "console")
    os.mkdir(console_dir, 0o700)
    p = subprocess.Popen([egressguard_bin, *args, "--console-dir", console_dir], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        for line in p.stdout:
            lines.append(line)
            if "console on https://" in line:
                break
        assert any("console login --dir " + console_dir in l for l in lines), "".join(lines) + p.stderr.read()
        path = os.path.join(console_dir, "console.key")
        assert oct(os.stat(path).st_mode & 0o777) == "0o600"
        r = run(egressguard_bin, "console", "login", "--dir", console_dir, "--user", "alice", "--role", "officer")
        assert r.returncode == 0 and "/login?t=" in r.stdout, r.stdout + r.stderr
        r = run(egressguard_bin, "console", "login", "--db", uri, "--user", "alice", "--role", "officer")
        assert r.returncode == 2 and "pass --dir DIR" in r.stderr, r.stdout + r.stderr
    finally:
        p.terminate()
        p.wait(timeout=20)
