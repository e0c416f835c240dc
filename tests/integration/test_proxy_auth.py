"""Proxy authentication (Basic, off by default): curl with and without credentials
through a real proxy to a real HTTPS origin."""
import os
import subprocess
import tempfile

import pytest

from proxy_helpers import Origin, Pki, Proxy

BIN = os.environ.get("EGRESSGUARD_BIN", "egressguard")


@pytest.fixture(scope="module")
def env():
    d = tempfile.mkdtemp(prefix="eg-auth-")
    pki = Pki(d)
    users = os.path.join(d, "users")
    hashed = subprocess.run(["openssl", "passwd", "-6", "correct horse"], check=True, capture_output=True,
                            text=True).stdout.strip()
    with open(users, "w") as f:
        f.write(f"# egressguard proxy users\nalice:{hashed}\n")
    origin = Origin(pki.good[1], pki.good[0])
    proxy = Proxy(BIN, pki, d, "--allow", "*", "--auth-users", users, "--auth-realm", "egress test")
    yield pki, origin, proxy, d
    proxy.stop()
    origin.close()


def curl(pki, proxy, url, *extra):
    r = subprocess.run(["curl", "-sS", "--max-time", "10", "--proxy", f"http://127.0.0.1:{proxy.port}",
                        "--cacert", pki.path("cluster-ca.pem"), "-w", "\n%{http_code}", *extra, url],
                       capture_output=True, text=True)
    return r


def test_without_credentials_the_proxy_answers_407_and_reports(env):
    pki, origin, proxy, _ = env
    r = curl(pki, proxy, f"https://localhost:{origin.port}/x", "--proxy-header", "X-Probe: 1", "-v")
    assert "407" in r.stderr and 'Proxy-Authenticate: Basic realm="egress test"' in r.stderr
    assert origin.state.requests == 0
    proxy.wait_verdict(lambda v: v.get("reason") == "proxy_auth_required" and v.get("method") == "CONNECT")


def test_wrong_password_is_refused(env):
    pki, origin, proxy, _ = env
    r = curl(pki, proxy, f"https://localhost:{origin.port}/x", "--proxy-user", "alice:wrong", "-v")
    assert "407" in r.stderr
    r = curl(pki, proxy, f"http://127.0.0.1:{origin.port}/plain", "--proxy-user", "mallory:correct horse")
    assert r.stdout.endswith("\n407")


def test_right_password_tunnels_and_plain_forwards(env):
    pki, origin, proxy, _ = env
    r = curl(pki, proxy, f"https://localhost:{origin.port}/ok", "--proxy-user", "alice:correct horse")
    assert r.returncode == 0 and r.stdout == "ok\n\n200", r.stderr
    proxy.wait_verdict(lambda v: v.get("path") == "/ok" and v.get("mode") == "bump")


def test_a_weak_users_file_is_refused_at_start(env):
    pki, _, _, d = env
    weak = os.path.join(d, "weak")
    with open(weak, "w") as f:
        f.write("alice:plaintext-password\n")
    r = subprocess.run([BIN, "proxy", "--listen", "127.0.0.1:0", "--ca-cert", pki.path("cluster-ca.pem"),
                        "--ca-key", pki.path("cluster-ca.key"), "--auth-users", weak],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert "weak:1" in r.stderr and "plaintext-password" not in r.stderr
