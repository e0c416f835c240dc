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
