"""The fleet of issue 22 with real processes: one PostgreSQL server the test starts, two
store replicas on it, three proxies (each with its own spool) and curl clients sending
HTTPS traffic through all three to a real origin. During the load one store replica is
SIGKILLed (and restarted later) and PostgreSQL itself is stopped for 30 s. At the end
every request a client saw answered has exactly one verdict in the database, `audit
verify` passes, and a rule pack activated through one replica reached all three proxies.

A proxy takes one store address (no client-side failover list), so proxies 0 and 2
report to replica A and proxy 1 to replica B; the killed replica is A, so two proxies
spool while it is down, and the pack activated through B reaches them only through the
database (WatchActive on A sees an activation made through B)."""
import collections
import os
import threading
import time

import pytest

from conftest import run
from pg_helpers import PgServer, pg, skip_module_without_server  # noqa: F401 (pg: fixture)
from proxy_helpers import Origin, Pki
from store_helpers import (StoreProcess, StoreProxy, all_store_verdicts, default_pack, free_port,  # noqa: F401
                           metric_value, pack_copy, pb, push_and_activate)

CARD = "4539 1488 0343 6467"  # Luhn-valid, absent from the shipped pack's text
PG_OUTAGE_S = 30

skip_module_without_server()


def replica(binary, uri, workdir, name):
    s = StoreProcess(binary, uri, free_port())
    s.log = os.path.join(workdir, f"{name}.log")
    return s.start()


class Clients:
    """Per proxy, two threads sending curl requests with unique paths until stopped.
    `answered` is {path: HTTP status} of every request that got an answer; requests
    without one (status 0) are counted apart, they need no verdict."""

    def __init__(self, pki, origin, proxies):
        self.pki, self.origin, self.proxies = pki, origin, proxies
        self.answered = {}
        self.unanswered = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._loop, args=(p, k), daemon=True)
                        for p in range(len(proxies)) for k in range(2)]

    def _loop(self, p, k):
        i = 0
        while not self.stop.is_set():
            path = f"/fleet-p{p}-c{k}-{i}"
            body = f"card {CARD}\n" if i % 5 == 0 else "nothing to see\n"
            code = self.proxies[p].curl(self.pki, self.origin.port, path, body)
            with self.lock:
                if code:
                    self.answered[path] = code
                else:
                    self.unanswered += 1
            i += 1

    def count(self):
        with self.lock:
            return len(self.answered)

    def start(self):
        for t in self.threads:
            t.start()

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=90)


def test_fleet_survives_a_replica_kill_and_a_database_outage(pb, egressguard_bin, workdir, pg):
    started = time.time()
    uri = pg.create_database("fleet")
    r = run(egressguard_bin, "store", "migrate", "--db", uri)
    assert r.returncode == 0, r.stdout + r.stderr
    a = replica(egressguard_bin, uri, workdir, "store-a")
    b = replica(egressguard_bin, uri, workdir, "store-b")
    pki = Pki(workdir)
    origin = Origin(pki.good[1], pki.good[0])
    proxies = []
    try:
        run_fleet(pb, egressguard_bin, workdir, pg, a, b, pki, origin, proxies, started)
    finally:
        for p in proxies:
            p.stop()
        origin.close()
        a.stop()
        b.stop()


def run_fleet(pb, egressguard_bin, workdir, pg, a, b, pki, origin, proxies, started):
    clients = None
    try:
        first = push_and_activate(egressguard_bin, a.address, default_pack(), "enforce")
        for n, store in enumerate((a, b, a)):
            proxies.append(StoreProxy(egressguard_bin, pki, store.address, os.path.join(workdir, f"spool-{n}.db"),
                                      "--reconnect-backoff-max-ms", "1000").start())
        for p in proxies:
            p.wait_pack(first)
        clients = Clients(pki, origin, proxies)
        clients.start()

        def wait_more(n, what, timeout=60):
            # Progress, not a sleep: the load must actually run through each phase.
            target = clients.count() + n
            deadline = time.time() + timeout
            while clients.count() < target:
                assert time.time() < deadline, f"clients stalled {what}: {clients.count()} of {target}"
                time.sleep(0.1)

        wait_more(60, "before the replica kill")
        a.kill()  # SIGKILL: no drain, in-flight streams cut
        wait_more(60, "with replica A dead")
        spooled = [p.metric("egressguard_spool_depth") for p in proxies]
        a.start()
        wait_more(30, "after replica A came back")

        pg.stop()
        outage_began = time.time()
        during = clients.count()
        time.sleep(PG_OUTAGE_S)
        answered_in_outage = clients.count() - during
        depth_in_outage = [p.metric("egressguard_spool_depth") for p in proxies]
        pg.start()
        outage = time.time() - outage_began
        wait_more(30, "after PostgreSQL came back")

        # A new pack activated through replica B, with the load still running.
        second = push_and_activate(egressguard_bin, b.address,
                                   pack_copy(os.environ["EGRESSGUARD_SOURCE_DIR"], workdir, "fleet-2"), "enforce")
        for p in proxies:
            p.wait_pack(second)
        wait_more(30, "after the second activation")
    finally:
        if clients:
            clients.finish()

    answered = dict(clients.answered)
    assert all(code in (200, 403) for code in answered.values()), collections.Counter(answered.values())
    # The proxies kept answering while PostgreSQL was gone: their spools held the verdicts.
    assert answered_in_outage > 0, "no request answered while PostgreSQL was down"
    assert max(depth_in_outage) > 0, depth_in_outage
    assert outage >= PG_OUTAGE_S
    assert spooled[0] + spooled[2] > 0, f"nothing spooled by A's proxies while A was dead: {spooled}"

    # Every spool drains once both replicas and the database are back.
    for p in proxies:
        p.wait_metric(lambda m: metric_value(m, "egressguard_spool_depth") == 0, timeout=90,
                      what="the spool drained")
    verdicts = all_store_verdicts(pb, b.address)
    per_path = collections.Counter(v.path for v in verdicts if v.path.startswith("/fleet-"))
    missing = [path for path in answered if per_path[path] == 0]
    doubled = {path: n for path, n in per_path.items() if n > 1}
    assert not missing, f"{len(missing)} answered requests without a verdict, e.g. {missing[:5]}"
    assert not doubled, f"paths with more than one verdict: {list(doubled.items())[:5]}"
    ids = [v.id for v in verdicts]
    assert len(ids) == len(set(ids))
    by_path = {v.path: v for v in verdicts}
    for path, code in answered.items():
        assert (by_path[path].action == pb.rules.BLOCK) == (code == 403), path
    # The database itself holds one row per verdict (no duplicate under another id).
    rows = int(pg.psql("fleet", "SELECT count(*) FROM verdicts").stdout.strip())
    assert rows == len(verdicts), (rows, len(verdicts))

    for s in (a, b):
        r = run(egressguard_bin, "audit", "verify", "--store", s.address, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
    print(f"\nfleet: {len(answered)} requests answered ({clients.unanswered} unanswered), "
          f"{len(per_path)} verdicts; spool depths with replica A dead {spooled}, "
          f"during the {outage:.0f} s PostgreSQL outage {depth_in_outage} "
          f"({answered_in_outage} requests answered meanwhile); {time.time() - started:.0f} s in all")
