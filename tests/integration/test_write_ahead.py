"""No data out without its record (issue 20, gap 2), with the real binary, a real store
process, a real TLS origin that holds its answers, and curl: a proxy SIGKILLed with
requests in flight leaves a verdict for every request the origin received, and the
restarted proxy closes them as interrupted (one verdict per id in the store, none
twice); completed transactions carry their response status and duration; and while
the store is down a completed transaction takes the place of its write-ahead record
in the spool instead of counting twice."""
import os
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from proxy_helpers import Pki
from store_helpers import (StoreProcess, StoreProxy, default_pack, free_port, metric_value, pb,  # noqa: F401
                           push_and_activate)
from store_helpers import all_store_verdicts as all_verdicts

IN_FLIGHT = 11


class SlowOrigin:
    """A TLS origin that counts each request when its body has arrived; paths under
    /slow/ are answered only after `hold` seconds (or when closed)."""

    def __init__(self, cert, key, hold=60.0):
        self.lock = threading.Lock()
        self.received = []
        self.release = threading.Event()
        origin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                self.rfile.read(n)
                with origin.lock:
                    origin.received.append(self.path)
                if self.path.startswith("/slow/"):
                    origin.release.wait(hold)
                body = b"stored\n"
                self.send_response(201)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def paths(self, prefix):
        with self.lock:
            return [p for p in self.received if p.startswith(prefix)]

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def wait_for(pred, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError("timed out waiting for " + what)


def curl_post(proxy, pki, port, path):
    return subprocess.Popen(
        ["curl", "-sS", "--max-time", "90", "--proxy", f"http://127.0.0.1:{proxy.port}", "--cacert",
         pki.path("cluster-ca.pem"), "-o", "/dev/null", "-w", "%{http_code}", "--data-binary",
         f"order {path} for the warehouse\n", "-H", "Content-Type: text/plain",
         f"https://localhost:{port}{path}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigkill_in_flight_leaves_a_record_for_every_forwarded_request(pb, egressguard_bin, workdir):
    pki = Pki(workdir)
    origin = SlowOrigin(pki.good[1], pki.good[0])
    store = StoreProcess(egressguard_bin, os.path.join(workdir, "store.db"), free_port()).start()
    spool = os.path.join(workdir, "spool.db")
    proxy = StoreProxy(egressguard_bin, pki, store.address, spool)
    again = None
    clients = []
    try:
        version = push_and_activate(egressguard_bin, store.address, default_pack(), "enforce")
        proxy.start().wait_pack(version)
        # Completed transactions: their record is completed in place, with status and duration.
        for i in range(3):
            c = curl_post(proxy, pki, origin.port, f"/fast/{i}")
            assert c.communicate(timeout=60)[0] == "201"
        wait_for(lambda: len([v for v in all_verdicts(pb, store.address) if v.path.startswith("/fast/")]) == 3,
                 30, "the completed verdicts in the store")

        # Requests the origin has received and not answered, then SIGKILL.
        clients = [curl_post(proxy, pki, origin.port, f"/slow/{i}") for i in range(IN_FLIGHT)]
        wait_for(lambda: len(origin.paths("/slow/")) == IN_FLIGHT, 60, "the origin to receive every request")
        # No verdict of these reached the store while they were open: one verdict per id.
        assert not [v for v in all_verdicts(pb, store.address) if v.path.startswith("/slow/")]
        proxy.kill()
        for c in clients:
            c.wait(timeout=30)
        received = set(origin.paths("/slow/"))
        assert len(received) == IN_FLIGHT

        # The restarted proxy closes what the killed one left open, and sends it.
        again = StoreProxy(egressguard_bin, pki, store.address, spool).start()
        wait_for(lambda: {v.path for v in all_verdicts(pb, store.address)} >= received, 30,
                 "a verdict for every request the origin received")
        assert f"closed {IN_FLIGHT} verdict(s) of transactions the last run forwarded but did not finish" \
            in again.log(), again.log()
        verdicts = all_verdicts(pb, store.address)
        ids = [v.id for v in verdicts]
        assert len(ids) == len(set(ids)), "a verdict id twice in the store"
        slow = [v for v in verdicts if v.path.startswith("/slow/")]
        assert sorted(v.path for v in slow) == sorted(received), "one verdict per forwarded request"
        for v in slow:
            assert v.phase == pb.verdict.Verdict.INTERRUPTED, v
            assert "interrupted" in v.reason, v.reason
            assert v.method == "POST" and v.host == "localhost"
            assert v.action == pb.rules.ALLOW
            assert v.response_status == 0
        fast = [v for v in verdicts if v.path.startswith("/fast/")]
        assert len(fast) == 3
        for v in fast:
            assert v.phase == pb.verdict.Verdict.COMPLETE, v
            assert v.response_status == 201
            assert v.duration_us > 0
            assert v.bytes_in > 0
        # Nothing is left open in the spool.
        again.wait_metric(lambda m: metric_value(m, "egressguard_spool_depth") == 0, what="an empty spool")
    finally:
        for c in clients:
            if c.poll() is None:
                c.kill()
        proxy.kill()
        if again:
            again.stop()
        store.stop()
        origin.close()


def test_a_completion_takes_its_records_place_while_the_store_is_down(pb, egressguard_bin, workdir):
    pki = Pki(workdir)
    origin = SlowOrigin(pki.good[1], pki.good[0])
    store = StoreProcess(egressguard_bin, os.path.join(workdir, "store.db"), free_port()).start()
    spool = os.path.join(workdir, "spool.db")
    proxy = StoreProxy(egressguard_bin, pki, store.address, spool, "--spool-max-rows", "4")
    try:
        version = push_and_activate(egressguard_bin, store.address, default_pack(), "enforce")
        proxy.start().wait_pack(version)
        store.kill()
        # Four completed transactions fill a four-verdict spool exactly: each completion
        # replaced its write-ahead record (eight appends, four verdicts).
        for i in range(4):
            c = curl_post(proxy, pki, origin.port, f"/fast/{i}")
            assert c.communicate(timeout=60)[0] == "201"
        proxy.wait_metric(lambda m: metric_value(m, "egressguard_spool_depth") == 4, what="4 verdicts spooled")
        # Full: the next one is refused before its first byte leaves.
        c = curl_post(proxy, pki, origin.port, "/fast/refused")
        assert c.communicate(timeout=60)[0] == "503"
        assert "/fast/refused" not in origin.paths("/fast/")
        # A second proxy cannot take the same spool (its open records are the first's).
        second = subprocess.run(StoreProxy(egressguard_bin, pki, store.address, spool).args, capture_output=True,
                                text=True, timeout=60)
        assert second.returncode != 0
        assert "is in use by another process" in second.stderr, second.stderr
        store.start()
        proxy.wait_metric(lambda m: metric_value(m, "egressguard_spool_depth") == 0, timeout=60,
                          what="the spool drained")
        verdicts = all_verdicts(pb, store.address)
        fast = sorted(v.path for v in verdicts if v.path.startswith("/fast/") and v.action == pb.rules.ALLOW)
        assert fast == [f"/fast/{i}" for i in range(4)]
        assert all(v.phase == pb.verdict.Verdict.COMPLETE for v in verdicts)
    finally:
        proxy.stop()
        store.stop()
        origin.close()
