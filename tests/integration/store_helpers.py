"""Helpers for the compliance-store integration tests: Python gRPC stubs generated
from the .proto files at test time (Debian's protoc + grpc_python_plugin), the API
certificates issued by the real binary, and store processes to start and kill."""
import os
import signal
import re
import socket
import subprocess
import sys
import tempfile
import time

import pytest

SOURCE_DIR = os.environ.get("EGRESSGUARD_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
PROTO_DIR = os.path.join(SOURCE_DIR, "proto")


def generate_stubs(out_dir):
    """protoc --python_out + grpc_python_plugin for every egressguard .proto; importable from out_dir."""
    protos = []
    for root, _, files in os.walk(os.path.join(PROTO_DIR, "egressguard")):
        protos += [os.path.relpath(os.path.join(root, f), PROTO_DIR) for f in files if f.endswith(".proto")]
    subprocess.run(["protoc", f"--proto_path={PROTO_DIR}", "--proto_path=/usr/include",
                    f"--python_out={out_dir}", f"--grpc_python_out={out_dir}",
                    "--plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin", *protos], check=True)
    for root, dirs, _ in os.walk(out_dir):
        for d in dirs:
            open(os.path.join(root, d, "__init__.py"), "a").close()
    sys.path.insert(0, out_dir)


@pytest.fixture(scope="session")
def pb():
    """The generated modules: pb.verdict, pb.store, pb.rule_admin, pb.audit, pb.rules (+ *_grpc)."""
    d = tempfile.mkdtemp(prefix="egressguard-pb-")
    generate_stubs(d)
    import importlib

    class Modules:
        pass

    m = Modules()
    for name in ("verdict", "store", "rule_admin", "audit"):
        setattr(m, name, importlib.import_module(f"egressguard.v1.{name}_pb2"))
        setattr(m, name + "_grpc", importlib.import_module(f"egressguard.v1.{name}_pb2_grpc"))
    m.rules = importlib.import_module("egressguard.rules.v1.rules_pb2")
    return m


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Certs:
    """An API CA with a server certificate and one client certificate per role."""

    def __init__(self, binary, workdir):
        self.dir = os.path.join(workdir, "api-ca")
        self.ca = os.path.join(self.dir, "api-ca.crt")
        self.prefix = {}
        out = os.path.join(workdir, "server")
        r = subprocess.run([binary, "ca", "issue-server", "--dir", self.dir, "--name", "store",
                            "--dns", "localhost", "--ip", "127.0.0.1", "--out", out],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        self.server = out
        for role in ("appliance", "officer", "auditor"):
            p = os.path.join(workdir, role)
            r = subprocess.run([binary, "ca", "issue-client", "--dir", self.dir, "--role", role,
                                "--name", f"test-{role}", "--out", p], capture_output=True, text=True, timeout=60)
            assert r.returncode == 0, r.stderr
            self.prefix[role] = p

    def store_flags(self):
        return ["--tls-cert", self.server + ".crt", "--tls-key", self.server + ".key", "--client-ca", self.ca]

    def client_flags(self, role):
        p = self.prefix[role]
        return ["--cert", p + ".crt", "--key", p + ".key", "--ca", self.ca]

    def channel(self, address, role):
        import grpc
        p = self.prefix[role]
        with open(self.ca, "rb") as ca, open(p + ".key", "rb") as key, open(p + ".crt", "rb") as crt:
            creds = grpc.ssl_channel_credentials(ca.read(), key.read(), crt.read())
        return grpc.secure_channel(address, creds)


class StoreProcess:
    """`egressguard store` as a child process; start() returns once it listens."""

    def __init__(self, binary, db, port, extra=()):
        self.binary, self.db, self.port, self.extra = binary, db, port, list(extra)
        self.proc = None
        self.log = db + ".log"

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def start(self, timeout=60):
        logf = open(self.log, "a")
        self.proc = subprocess.Popen([self.binary, "store", "--listen", self.address, "--db", self.db, *self.extra],
                                     stdout=subprocess.PIPE, stderr=logf, text=True)
        line = self.proc.stdout.readline()
        assert "listening on" in line, f"store did not start: {line!r}; log: {open(self.log).read()}"
        deadline = time.time() + timeout
        while time.time() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.05)
        raise AssertionError("store port never opened")

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


def make_verdict(pb, vid, host="api.example.com", category="", action=None, seconds=None):
    v = pb.verdict.Verdict(id=vid, appliance="pytest", client_address="10.9.8.7", workload="ns/test",
                           host=host, port=443, method="POST", path="/x", bytes_out=1234, bytes_in=56,
                           rule_pack_version="it-1")
    v.time.FromSeconds(int(seconds if seconds is not None else time.time()))
    if category:
        v.findings.add(rule_id=category + ".it", category=category, count=1, evidence="**** redacted ****")
    v.action = action if action is not None else pb.rules.ALLOW
    return v


def report(pb, channel, verdicts, batch=100):
    """Streams verdicts over VerdictIngest.Report like an appliance; returns the acked ids."""
    stub = pb.store_grpc.VerdictIngestStub(channel)
    batches = [verdicts[i:i + batch] for i in range(0, len(verdicts), batch)]
    acked = []
    for ack in stub.Report(iter([pb.store.ReportRequest(verdicts=b) for b in batches]), timeout=60):
        acked += list(ack.ids)
    return acked


def read_run_banner(proc, timeout=120, want_admin=False):
    """Reads `egressguard run`'s banner from proc.stdout: returns (proxy port, admin
    "ADDR:PORT" or None, the text seen). The port is None when run did not start."""
    seen, port, admin = "", None, None
    deadline = time.time() + timeout
    while time.time() < deadline and (port is None or (want_admin and admin is None)):
        line = proc.stdout.readline()
        if not line:
            break
        seen += line
        m = re.search(r"proxy\s+http://127\.0\.0\.1:(\d+)", line)
        if m:
            port = int(m.group(1))
        m = re.search(r"admin\s+http://(127\.0\.0\.1:\d+)/metrics", line)
        if m:
            admin = m.group(1)
    return port, admin, seen


# ---------------------------------------------------------------- a proxy with a store
def store_cli(binary, store_address, *args, timeout=120):
    """An officer command against a plaintext loopback store; returns stdout (asserts success)."""
    r = subprocess.run([binary, *args, "--store", store_address], capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def pack_copy(source_dir, workdir, version):
    """A copy of the shipped pack under workdir whose pack.yaml says `version`."""
    import shutil
    dest = os.path.join(workdir, f"pack-{version}")
    shutil.copytree(os.path.join(source_dir, "rules", "default"), dest)
    manifest = os.path.join(dest, "pack.yaml")
    with open(manifest) as f:
        text = f.read()
    text, n = re.subn(r'(?m)^version:.*$', f'version: "{version}"', text, count=1)
    assert n == 1
    with open(manifest, "w") as f:
        f.write(text)
    return dest


def default_pack():
    """The shipped pack's directory."""
    return os.path.join(os.environ["EGRESSGUARD_SOURCE_DIR"], "rules", "default")


def push_and_activate(binary, store_address, pack_dir, mode):
    """Pushes the pack at pack_dir and activates it in `mode`; returns its version."""
    store_cli(binary, store_address, "rules", "push", pack_dir, "--reason", "it")
    out = store_cli(binary, store_address, "rules", "list")
    # Newest first would be a guess: take the version from the pack file instead.
    with open(os.path.join(pack_dir, "pack.yaml")) as f:
        version = re.search(r'(?m)^version:\s*"?([^"\n]+)"?', f.read()).group(1)
    assert version in out, out
    store_cli(binary, store_address, "rules", "activate", version, "--mode", mode, "--reason", "it")
    return version


class StoreProxy:
    """`egressguard proxy --store ...` with an admin listener; keeps its stderr lines.
    `port` and `admin` ("127.0.0.1:N") once started."""

    def __init__(self, binary, pki, store_address, spool, *extra, admin_port=None):
        self.admin = f"127.0.0.1:{admin_port or free_port()}"
        self.args = [binary, "proxy", "--listen", "127.0.0.1:0", "--ca-cert", pki.path("cluster-ca.pem"),
                     "--ca-key", pki.path("cluster-ca.key"), "--upstream-ca", pki.path("origin-root.pem"),
                     "--upstream-ca-only", "--workers", "2", "--allow", "localhost", "--store", store_address,
                     "--spool", spool, "--admin-listen", self.admin, *extra]
        self.stderr = []
        self.proc = None
        self.port = None

    def start(self):
        import threading
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        threading.Thread(target=lambda: [self.stderr.append(l) for l in self.proc.stderr], daemon=True).start()
        line = ""
        for _ in range(50):
            line = self.proc.stdout.readline()
            if "listening on" in line or not line:
                break
        if "listening on" not in line:
            self.kill()
            raise AssertionError("proxy did not start: " + line + "".join(self.stderr))
        self.port = int(line.split("listening on ")[1].split()[0].rsplit(":", 1)[1])
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()
        return self

    def log(self):
        return "".join(self.stderr)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def curl(self, pki, origin_port, path, body=None):
        """The origin through the proxy; returns the HTTP status (0: no answer)."""
        args = ["curl", "-sS", "--max-time", "30", "--proxy", f"http://127.0.0.1:{self.port}", "--cacert",
                pki.path("cluster-ca.pem"), "-o", "/dev/null", "-w", "%{http_code}"]
        if body is not None:
            args += ["--data-binary", body, "-H", "Content-Type: text/plain"]
        r = subprocess.run(args + [f"https://localhost:{origin_port}{path}"], capture_output=True, text=True,
                           timeout=60)
        return int(r.stdout or 0)

    def http(self, path):
        """(status, body) of an admin GET."""
        import urllib.error
        import urllib.request
        try:
            with urllib.request.urlopen(f"http://{self.admin}{path}", timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def metrics(self):
        """{(name, frozenset(labels)): value} from /metrics."""
        status, text = self.http("/metrics")
        assert status == 200, status
        out = {}
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$', line)
            assert m, line
            labels = frozenset(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
            out[(m.group(1), labels)] = float(m.group(3))
        return out

    def metric(self, name, **labels):
        return self.metrics().get((name, frozenset(labels.items())), 0.0)

    def wait_pack(self, version):
        """Waits until the store's pack `version` is active here."""
        return self.wait_metric(lambda m: metric_value(m, "egressguard_rule_pack_active", version=version) == 1,
                                what=f"the store's pack {version}")

    def wait_metric(self, pred, timeout=30, what="metric condition"):
        deadline = time.time() + timeout
        while True:
            m = self.metrics()
            if pred(m):
                return m
            if time.time() > deadline:
                raise AssertionError(f"{what} not met in {timeout} s; log: {self.log()[-3000:]}")
            time.sleep(0.05)


def metric_value(metrics, name, **labels):
    return metrics.get((name, frozenset(labels.items())), 0.0)


def all_store_verdicts(pb, store_address):
    """Every verdict in the store, all pages."""
    import grpc
    stub = pb.store_grpc.VerdictQueryStub(grpc.insecure_channel(store_address))
    out, token = [], ""
    while True:
        page = stub.Query(pb.store.QueryRequest(page_size=1000, page_token=token), timeout=30)
        out.extend(page.verdicts)
        token = page.next_page_token
        if not token:
            return out


def store_verdicts(pb, store_address, paths, timeout=30):
    """{path: verdict} for the given paths once all are in the store (or what is there at timeout)."""
    deadline = time.time() + timeout
    while True:
        found = {v.path: v for v in all_store_verdicts(pb, store_address) if v.path in paths}
        if len(found) == len(paths) or time.time() > deadline:
            return found
        time.sleep(0.2)
