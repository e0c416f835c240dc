"""The YAML config file end to end with the real binary: `config check` points at the
bad line, `config defaults` passes its own check, `proxy --config` serves with the
file's allow-list and flags win over keys, a bad file is refused at start, SIGHUP
swaps the allow-list under keep-alive and fresh-connection load with zero failed
requests, and JSON logs stay parseable and free of the PII that went through."""
import glob
import http.client
import json
import os
import re
import signal
import ssl
import subprocess
import threading
import time

import pytest

from conftest import run
from proxy_helpers import Origin, Pki, connect_tunnel
from store_helpers import free_port, read_run_banner

CONFIG_BAD = """\
proxy:
  listen: "127.0.0.1:3128"
  alow: ["*:443"]
  client_cidrs:
    - 10.0.0.0/33
  mode: block
log:
  level: loud
"""


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def test_check_reports_each_bad_line_and_exits_2(egressguard_bin, workdir):
    path = write(os.path.join(workdir, "bad.yaml"), CONFIG_BAD)
    p = run(egressguard_bin, "config", "check", path)
    assert p.returncode == 2, p.stdout + p.stderr
    assert f"{path}:3:3: unknown key 'proxy.alow'" in p.stderr, p.stderr
    assert f"{path}:5:7: proxy.client_cidrs" in p.stderr, p.stderr
    assert f"{path}:6:9: proxy.mode: unknown mode 'block'" in p.stderr, p.stderr
    assert f"{path}:8:10: log.level" in p.stderr, p.stderr
    assert "ok" not in p.stdout


@pytest.mark.parametrize("which", ["proxy", "store", "run"])
def test_defaults_pass_check(egressguard_bin, workdir, which):
    p = run(egressguard_bin, "config", "defaults", "--for", which)
    assert p.returncode == 0, p.stderr
    assert "proxy:" in p.stdout and "admin:" in p.stdout and "#" in p.stdout
    path = write(os.path.join(workdir, f"{which}.yaml"), p.stdout)
    c = run(egressguard_bin, "config", "check", path)
    assert c.returncode == 0, c.stderr
    assert c.stdout.strip() == "ok"


def test_run_defaults_are_the_embedded_ones(egressguard_bin):
    out = run(egressguard_bin, "config", "defaults", "--for", "run").stdout
    assert re.search(r'allow: \["\*:443"\]', out), out
    assert re.search(r'listen: "127\.0\.0\.1:9090"', out), out


class ConfigProxy:
    """`egressguard proxy --config FILE` with stderr kept in a file (the logs)."""

    def __init__(self, binary, pki, workdir, config_text, *extra, name="proxy"):
        self.config = write(os.path.join(workdir, f"{name}.yaml"), config_text)
        self.log = os.path.join(workdir, f"{name}.log")
        args = [binary, "proxy", "--config", self.config, "--listen", "127.0.0.1:0", "--ca-cert",
                pki.path("cluster-ca.pem"), "--ca-key", pki.path("cluster-ca.key"), "--upstream-ca",
                pki.path("origin-root.pem"), "--upstream-ca-only", "--workers", "2", *extra]
        self.err = open(self.log, "w")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.err, text=True)
        line = self.proc.stdout.readline()
        if "listening on" not in line:
            self.proc.kill()
            raise RuntimeError("proxy did not start: " + line + open(self.log).read())
        self.port = int(line.split("listening on ")[1].split()[0].rsplit(":", 1)[1])
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()

    def logs(self):
        with open(self.log) as f:
            return f.read()

    def wait_log(self, text, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.logs().count(text):
                return
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not logged:\n{self.logs()}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.err.close()
        return self.proc.returncode


def tunnel_status(proxy, port):
    s, status, _ = connect_tunnel(proxy.port, "localhost", port)
    s.close()
    return status


def curl_get(pki, proxy, port, path="/"):
    r = subprocess.run(["curl", "-sS", "--proxy", f"http://127.0.0.1:{proxy.port}", "--cacert",
                        pki.path("cluster-ca.pem"), "-o", "/dev/null", "-w", "%{http_code}",
                        f"https://localhost:{port}{path}"], capture_output=True, text=True, timeout=30)
    return int(r.stdout or 0)


@pytest.fixture(scope="module")
def origins(egressguard_bin):
    import tempfile
    import shutil
    d = tempfile.mkdtemp(prefix="egressguard-config-")
    pki = Pki(d)
    os_ = [Origin(pki.good[1], pki.good[0]) for _ in range(3)]
    yield pki, os_, d
    for o in os_:
        o.close()
    shutil.rmtree(d, ignore_errors=True)


def allow_yaml(*ports, extra=""):
    rules = ", ".join(f'"localhost:{p}"' for p in ports)
    return f"proxy:\n  allow: [{rules}]\n  timeouts: {{header_ms: 5000}}\n{extra}"


def test_proxy_serves_with_the_files_allow_list(egressguard_bin, origins):
    pki, (a, b, _), d = origins
    proxy = ConfigProxy(egressguard_bin, pki, d, allow_yaml(a.port), name="allowlist")
    try:
        assert curl_get(pki, proxy, a.port) == 200
        assert tunnel_status(proxy, b.port) == 403
    finally:
        assert proxy.stop() == 0


def test_flags_win_over_keys(egressguard_bin, origins):
    pki, (a, b, _), d = origins
    # The file's listen address is unusable; --listen (given by ConfigProxy) must win.
    text = allow_yaml(a.port, extra='  listen: "127.0.0.1:1"\n  mode: enforce\n')
    proxy = ConfigProxy(egressguard_bin, pki, d, text, "--allow", f"localhost:{b.port}", "--mode", "monitor",
                        name="flags")
    try:
        assert tunnel_status(proxy, a.port) == 403, "the --allow flag replaces the file's list"
        assert curl_get(pki, proxy, b.port) == 200
    finally:
        proxy.stop()
    # And the key wins over the built-in default (monitor) when no flag is given.
    keyed = ConfigProxy(egressguard_bin, pki, d, allow_yaml(a.port, extra="  mode: enforce\n"), name="keyed")
    try:
        body = "card 4539 1488 0343 6467 and 5425 2334 3010 9903\n"
        r = subprocess.run(["curl", "-sS", "--proxy", f"http://127.0.0.1:{keyed.port}", "--cacert",
                            pki.path("cluster-ca.pem"), "-o", "/dev/null", "-w", "%{http_code}",
                            "--data-binary", body, f"https://localhost:{a.port}/post"],
                           capture_output=True, text=True, timeout=30)
        assert r.stdout == "403", "mode: enforce from the file blocks the cards"
    finally:
        keyed.stop()


@pytest.mark.parametrize("body,where", [
    ('proxy:\n  allow: ["localhost:notaport"]\n', ":2:"),
    ('proxy:\n  listen: "127.0.0.1:0"\n  unknown_key: 1\n', ":3:3: unknown key 'proxy.unknown_key'"),
    ('proxy:\n  workers: lots\n', ":2:12: proxy.workers must be an integer"),
])
def test_bad_file_is_refused_at_start(egressguard_bin, origins, body, where):
    pki, _, d = origins
    path = write(os.path.join(d, "refused.yaml"), body)
    for command in (["proxy", "--ca-cert", pki.path("cluster-ca.pem"), "--ca-key", pki.path("cluster-ca.key")],
                    ["store", "--db", os.path.join(d, "never.db")], ["run", "--home", os.path.join(d, "never")]):
        p = run(egressguard_bin, *command, "--config", path, timeout=30)
        assert p.returncode == 2, (command, p.stdout, p.stderr)
        assert f"{path}{where}" in p.stderr, (command, p.stderr)
    assert not os.path.exists(os.path.join(d, "never.db"))


def test_sighup_swaps_the_allow_list_under_load(egressguard_bin, origins):
    pki, (stay, drop, add), d = origins
    proxy = ConfigProxy(egressguard_bin, pki, d, allow_yaml(stay.port, drop.port), name="reload")
    stop = threading.Event()
    results = {"ok": 0, "failed": []}
    lock = threading.Lock()

    def keep_alive():
        ctx = ssl.create_default_context(cafile=pki.path("cluster-ca.pem"))
        conn = http.client.HTTPSConnection("127.0.0.1", proxy.port, context=ctx, timeout=20)
        conn.set_tunnel("localhost", stay.port)
        while not stop.is_set():
            try:
                conn.request("GET", "/size/2000")
                r = conn.getresponse()
                body = r.read()
                good = r.status == 200 and len(body) == 2000
            except Exception as e:  # noqa: BLE001 - any failure counts
                good, r = False, e
            with lock:
                if good:
                    results["ok"] += 1
                else:
                    results["failed"].append(f"keep-alive: {r!r}")

    def fresh_connections():
        while not stop.is_set():
            code = curl_get(pki, proxy, stay.port)
            with lock:
                if code == 200:
                    results["ok"] += 1
                else:
                    results["failed"].append(f"curl: {code}")

    threads = [threading.Thread(target=keep_alive), threading.Thread(target=fresh_connections),
               threading.Thread(target=fresh_connections)]
    try:
        for t in threads:
            t.start()
        assert curl_get(pki, proxy, drop.port) == 200
        assert tunnel_status(proxy, add.port) == 403
        time.sleep(0.5)
        write(proxy.config, allow_yaml(stay.port, add.port))
        proxy.proc.send_signal(signal.SIGHUP)
        proxy.wait_log("SIGHUP: reloaded")
        assert tunnel_status(proxy, drop.port) == 403, "newly denied destination refused after reload"
        assert curl_get(pki, proxy, add.port) == 200, "newly allowed destination works after reload"
        # A bad file on SIGHUP: logged with its line, the running config stays.
        write(proxy.config, 'proxy:\n  allow: "not a list"\n')
        proxy.proc.send_signal(signal.SIGHUP)
        proxy.wait_log("config not reloaded")
        assert f"{proxy.config}:2:10: proxy.allow must be a list" in proxy.logs()
        assert curl_get(pki, proxy, add.port) == 200
        assert tunnel_status(proxy, drop.port) == 403
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
        rc = proxy.stop()
    assert results["failed"] == [], results["failed"][:10]
    assert results["ok"] >= 20, results
    assert rc == 0


# Seeded PII: Luhn-valid cards absent from the shipped pack's text, an IBAN with a
# valid mod-97, e-mails, a Swiss AHV number and a US SSN.
PII = ["4539 1488 0343 6467", "4539148803436467", "5425 2334 3010 9903", "5425233430109903",
       "CH78 0483 5098 7654 3210 1", "CH7804835098765432101", "jane.roe.4711@example-bank.ch",
       "max.muster@patient-mail.example", "756.9876.5432.17", "7569876543217", "536-22-8174"]
BODY = ("customer card 4539 1488 0343 6467, second card 5425 2334 3010 9903\n"
        "IBAN CH78 0483 5098 7654 3210 1 owner jane.roe.4711@example-bank.ch\n"
        "AHV 756.9876.5432.17, SSN 536-22-8174, contact max.muster@patient-mail.example\n") * 20


def test_json_logs_parse_and_hold_no_pii(egressguard_bin, workdir):
    pki = Pki(workdir)
    origin = Origin(pki.good[1], pki.good[0])
    home = os.path.join(workdir, "home")
    config = write(os.path.join(workdir, "run.yaml"), f"""\
home: "{home}"
proxy:
  listen: "127.0.0.1:0"
  allow: ["localhost"]
  upstream_ca: "{pki.path('origin-root.pem')}"
  workers: 2
  mode: monitor
store:
  listen: "127.0.0.1:{free_port()}"
  console_listen: "127.0.0.1:0"
admin:
  listen: ""
log:
  level: debug
  format: json
""")
    log = os.path.join(workdir, "run.log")
    err = open(log, "w")
    proc = subprocess.Popen([egressguard_bin, "run", "--config", config], stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        port, _, seen = read_run_banner(proc)
        assert port, "run did not start: " + seen + open(log).read()
        threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
        bundle = os.path.join(home, "ca-bundle.pem")
        codes = []
        for i in range(6):
            q = "?email=jane.roe.4711@example-bank.ch&card=4539148803436467"
            r = subprocess.run(["curl", "-sS", "--proxy", f"http://127.0.0.1:{port}", "--cacert", bundle, "-o",
                                "/dev/null", "-w", "%{http_code}", "--data-binary", BODY, "-H",
                                "X-Customer: jane.roe.4711@example-bank.ch", "-H", "Content-Type: text/plain",
                                f"https://localhost:{origin.port}/upload/{i}{q}"],
                               capture_output=True, text=True, timeout=60)
            codes.append(r.stdout)
        # A refused destination and a bad origin certificate log too.
        subprocess.run(["curl", "-sS", "--proxy", f"http://127.0.0.1:{port}", "-o", "/dev/null",
                        "https://127.0.0.1:1/?ssn=536-22-8174"], capture_output=True, timeout=30)
        assert codes == ["200"] * 6, codes
        time.sleep(1.5)  # let the reporter deliver to the store
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        err.close()
        origin.close()
    text = open(log, encoding="utf-8").read()
    lines = [l for l in text.splitlines() if l.strip()]
    assert lines, "debug level with traffic should have logged something"
    for line in lines:
        entry = json.loads(line)  # every stderr line is one JSON object
        assert set(entry) == {"ts", "level", "logger", "msg"}, entry
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", entry["ts"]), entry
    files = [log] + glob.glob(os.path.join(home, "store.db*")) + glob.glob(os.path.join(home, "spool.db*"))
    assert any(f.endswith("store.db") for f in files), files
    for path in files:
        data = open(path, "rb").read()
        for value in PII:
            assert value.encode() not in data, f"{value!r} found in {path}"


def test_sighup_swaps_the_workload_map(egressguard_bin, origins):
    pki, (origin, _, _), d = origins
    audit = os.path.join(d, "workloads-audit.jsonl")

    def config(name):
        return allow_yaml(origin.port, extra=f'  workloads: [{{workload: "{name}", cidrs: ["127.0.0.0/8"]}}]\n')

    def workloads_in_log(count):
        deadline = time.monotonic() + 10  # the audit log is written in batches
        while time.monotonic() < deadline:
            lines = open(audit).read().splitlines() if os.path.exists(audit) else []
            if len(lines) >= count:
                return [json.loads(line).get("workload") for line in lines]
            time.sleep(0.05)
        raise AssertionError(f"fewer than {count} verdicts in {audit}")

    proxy = ConfigProxy(egressguard_bin, pki, d, config("payments/api"), "--audit-log", audit, name="workloads")
    try:
        assert curl_get(pki, proxy, origin.port, "/before") == 200
        assert workloads_in_log(1) == ["payments/api"]
        write(proxy.config, config("web/frontend"))
        proxy.proc.send_signal(signal.SIGHUP)
        proxy.wait_log("1 workload mappings")
        assert curl_get(pki, proxy, origin.port, "/after") == 200
        assert workloads_in_log(2) == ["payments/api", "web/frontend"]
        # A mapping with a bad CIDR is refused as a whole; the running map stays.
        write(proxy.config, config("x").replace("127.0.0.0/8", "127.0.0.0/33"))
        proxy.proc.send_signal(signal.SIGHUP)
        proxy.wait_log("not reloaded")
        assert curl_get(pki, proxy, origin.port, "/kept") == 200
        assert workloads_in_log(3)[2] == "web/frontend"
    finally:
        assert proxy.stop() == 0
