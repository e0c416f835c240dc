"""A standalone appliance (`egressguard proxy --store`) against a separate `egressguard
store` over mTLS with the appliance role: the proxy follows the store's active pack and
mode, and its verdicts reach the store through the spool."""
import os
import subprocess
import threading
import time

import grpc

from proxy_helpers import Origin, Pki
from store_helpers import Certs, StoreProcess, free_port, pb  # noqa: F401

CARD = "4539 1488 0343 6467"


def cli(binary, *args):
    r = subprocess.run([binary, *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr + r.stdout
    return r.stdout


def test_proxy_with_store_follows_active_pack_and_reports(pb, egressguard_bin, workdir):
    certs = Certs(egressguard_bin, workdir)
    store = StoreProcess(egressguard_bin, os.path.join(workdir, "store.db"), free_port(), certs.store_flags()).start()
    pki = Pki(workdir)
    origin = Origin(pki.good[1], pki.good[0])
    proxy = None
    try:
        officer = ["--store", f"localhost:{store.port}", *certs.client_flags("officer")]
        source = os.environ["EGRESSGUARD_SOURCE_DIR"]
        out = cli(egressguard_bin, "rules", "push", os.path.join(source, "rules/default"), "--reason", "it", *officer)
        version = cli(egressguard_bin, "rules", "list", *officer).split()[0]
        cli(egressguard_bin, "rules", "activate", version, "--mode", "enforce", "--reason", "it", *officer)

        app = certs.prefix["appliance"]
        proxy = subprocess.Popen(
            [egressguard_bin, "proxy", "--listen", "127.0.0.1:0", "--ca-cert", pki.path("cluster-ca.pem"),
             "--ca-key", pki.path("cluster-ca.key"), "--upstream-ca", pki.path("origin-root.pem"),
             "--upstream-ca-only", "--workers", "1", "--allow", "localhost",
             "--store", f"localhost:{store.port}", "--spool", os.path.join(workdir, "spool.db"),
             "--store-cert", app + ".crt", "--store-key", app + ".key", "--store-ca", certs.ca],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = ""
        for _ in range(50):
            line = proxy.stdout.readline()
            if "listening on" in line or not line:
                break
        assert "listening on" in line, line + proxy.stderr.read()
        port = int(line.split("listening on ")[1].split()[0].rsplit(":", 1)[1])
        threading.Thread(target=lambda: [None for _ in proxy.stdout], daemon=True).start()
        threading.Thread(target=lambda: [None for _ in proxy.stderr], daemon=True).start()

        def post(path):
            r = subprocess.run(["curl", "-sS", "--proxy", f"http://127.0.0.1:{port}", "--cacert",
                                pki.path("cluster-ca.pem"), "-o", "/dev/null", "-w", "%{http_code}",
                                "--data-binary", f"card {CARD}\n", f"https://localhost:{origin.port}{path}"],
                               capture_output=True, text=True, timeout=60)
            return int(r.stdout or 0)

        # The pack arrives through WatchActive; until it does the proxy fails closed (403 too),
        # so wait for the verdict to carry the store's pack version.
        deadline = time.time() + 60
        query = pb.store_grpc.VerdictQueryStub(certs.channel(f"localhost:{store.port}", "auditor"))
        found = None
        n = 0
        while time.time() < deadline and found is None:
            n += 1
            assert post(f"/appliance-{n}") == 403
            for _ in range(20):
                for v in query.Query(pb.store.QueryRequest(page_size=1000), timeout=30).verdicts:
                    if v.path == f"/appliance-{n}" and v.rule_pack_version == version:
                        found = v
                if found:
                    break
                time.sleep(0.1)
        assert found is not None, "no verdict judged by the store's pack reached the store"
        assert found.enforced and any(f.category == "credit_card" for f in found.findings)
        assert origin.state.received(f"/appliance-{n}") == 0
    finally:
        if proxy and proxy.poll() is None:
            proxy.terminate()
            proxy.wait(timeout=30)
        store.stop()
        origin.close()
