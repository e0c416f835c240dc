"""Durability and tamper evidence with the real processes: the store SIGKILLed under
load and restarted, the reporter (appliance side) SIGKILLed and its spool replayed,
and a row edited in the sqlite file found by `audit verify`."""
import os
import re
import signal
import sqlite3
import subprocess
import time

from conftest import run
from store_helpers import StoreProcess, free_port, pb  # noqa: F401


def stored_ids(pb, address):
    import grpc
    stub = pb.store_grpc.VerdictQueryStub(grpc.insecure_channel(address))
    ids, token = [], ""
    while True:
        page = stub.Query(pb.store.QueryRequest(page_size=1000, page_token=token), timeout=60)
        ids += [v.id for v in page.verdicts]
        token = page.next_page_token
        if not token:
            return ids


def generator(binary, store, spool, count, prefix, rate=0):
    return subprocess.Popen([binary, "verdicts", "generate", "--store", store.address, "--spool", spool,
                             "--count", str(count), "--id-prefix", prefix, "--rate", str(rate),
                             "--drain-timeout", "240"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_store_killed_under_load_keeps_every_verdict_exactly_once(pb, egressguard_bin, workdir):
    # Plaintext is fine here: the store serves on loopback only.
    store = StoreProcess(egressguard_bin, os.path.join(workdir, "store.db"), free_port()).start()
    # Load for the whole outage: 1,000 verdicts/s for 36 s; the store is SIGKILLed
    # after 2 s and stays down 30 s, so most verdicts wait in the spool.
    rate, count = 1000, 36000
    spool = os.path.join(workdir, "spool.db")
    gen = generator(egressguard_bin, store, spool, count, "load", rate=rate)
    time.sleep(2.0)
    store.kill()  # mid-stream: some batches committed, some in flight, the rest spooled
    down_since = time.time()
    time.sleep(10.0)
    # While it is down the spool grows (the generator keeps submitting) and holds them.
    conn = sqlite3.connect(spool, timeout=30)
    try:
        spooled = conn.execute("SELECT COUNT(*) FROM spool").fetchone()[0]
    finally:
        conn.close()
    assert spooled >= 5000, spooled
    time.sleep(max(0.0, 30.0 - (time.time() - down_since)))
    assert time.time() - down_since >= 30.0
    store.start()
    out, err = gen.communicate(timeout=300)
    assert gen.returncode == 0, out + err
    assert f"submitted {count} (refused 0)" in out
    ids = stored_ids(pb, store.address)
    assert len(ids) == count  # exactly once
    assert set(ids) == {f"load-{i}" for i in range(count)}
    r = run(egressguard_bin, "audit", "verify", "--store", store.address)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"ok: {count} verdicts" in r.stdout
    store.stop()


def test_reporter_killed_its_spool_replays(pb, egressguard_bin, workdir):
    store = StoreProcess(egressguard_bin, os.path.join(workdir, "store.db"), free_port()).start()
    store.stop()  # the store is down: everything the reporter accepts stays spooled
    spool = os.path.join(workdir, "spool.db")
    gen = generator(egressguard_bin, store, spool, 100000, "kill", rate=2000)
    submitted = 0
    deadline = time.time() + 60
    while submitted < 3000 and time.time() < deadline:
        line = gen.stdout.readline()
        m = re.match(r"submitted (\d+)", line)
        if m:
            submitted = int(m.group(1))
    gen.send_signal(signal.SIGKILL)
    gen.wait(timeout=30)
    assert submitted >= 3000
    store.start()
    r = run(egressguard_bin, "verdicts", "drain", "--store", store.address, "--spool", spool, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    ids = stored_ids(pb, store.address)
    assert len(ids) == len(set(ids))
    # Submit returns only after the spool commit, and ids are sequential, so the store
    # must hold an unbroken prefix at least as long as what was reported submitted.
    numbers = sorted(int(i.split("-")[1]) for i in ids)
    assert numbers == list(range(len(numbers)))
    assert len(numbers) >= submitted
    store.stop()


def test_edited_row_in_the_file_is_found_by_verify(pb, egressguard_bin, workdir):
    db = os.path.join(workdir, "store.db")
    store = StoreProcess(egressguard_bin, db, free_port()).start()
    gen = generator(egressguard_bin, store, os.path.join(workdir, "spool.db"), 50, "edit")
    out, err = gen.communicate(timeout=120)
    assert gen.returncode == 0, out + err
    r = run(egressguard_bin, "audit", "verify", "--store", store.address)
    assert r.returncode == 0, r.stdout
    store.stop()
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE verdicts SET action = 3 WHERE seq = 17")
        conn.execute("DELETE FROM verdicts WHERE seq = 30")
        conn.execute("UPDATE audit SET detail = 'nothing happened' WHERE seq = 1")
    store.start()
    r = run(egressguard_bin, "audit", "verify", "--store", store.address)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "verdicts seq 17: edited" in r.stdout
    assert "verdicts seq 31: deleted" in r.stdout
    assert "audit seq 1: edited" in r.stdout
    assert "TAMPERED" in r.stdout
    store.stop()
