"""Transparent and SNI listeners with real redirection.

Transparent: a client in a network namespace this test creates (joined to the host by a
veth pair) dials an HTTPS origin's address; an iptables REDIRECT rule on the host side
of the veth sends the connection to the proxy's transparent port, and the proxy finds
the original destination with SO_ORIGINAL_DST (IPv4) and IP6T_SO_ORIGINAL_DST (IPv6).
SNI: a client on loopback dials the SNI port; the destination is the ClientHello's name.
"""
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
from http.server import ThreadingHTTPServer

import pytest

from proxy_helpers import Origin, OriginState, Pki, Proxy, _leaf, make_handler
from store_helpers import free_port

BIN = os.environ.get("EGRESSGUARD_BIN", "egressguard")
SUFFIX = str(os.getpid() % 100000)
NS = "egt" + SUFFIX
HOST_IF = "egh" + SUFFIX
NS_IF = "egn" + SUFFIX
# A /30 and a /64 of private space derived from the pid, so parallel runs don't collide.
NET4 = f"10.{200 + os.getpid() % 50}.{os.getpid() % 250}."
NET6 = f"fd00:e9:{os.getpid() % 65536:x}::"


def ip(*args, ns=None):
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(args)
    return subprocess.run(cmd, check=True, capture_output=True, text=True)


def can_make_namespaces():
    if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("iptables"):
        return False
    probe = "egprobe" + SUFFIX
    ok = subprocess.run(["ip", "netns", "add", probe], capture_output=True).returncode == 0
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return ok


pytestmark = pytest.mark.skipif(not can_make_namespaces(),
                                reason="needs root, iproute2 and iptables to create a network namespace")


class BoundOrigin:
    """An HTTPS origin bound to a given address (the helpers' Origin is loopback-only)."""

    def __init__(self, address, cert, key, family):
        self.state = OriginState()

        class Server(ThreadingHTTPServer):
            address_family = family

        self.server = Server((address, 0), make_handler(self.state))
        self.server.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def net():
    rules = []
    try:
        ip("ip", "netns", "add", NS)
        ip("ip", "link", "add", HOST_IF, "type", "veth", "peer", "name", NS_IF)
        ip("ip", "link", "set", NS_IF, "netns", NS)
        ip("ip", "addr", "add", NET4 + "1/30", "dev", HOST_IF)
        ip("ip", "-6", "addr", "add", NET6 + "1/64", "dev", HOST_IF, "nodad")
        ip("ip", "link", "set", HOST_IF, "up")
        ip("ip", "addr", "add", NET4 + "2/30", "dev", NS_IF, ns=NS)
        ip("ip", "-6", "addr", "add", NET6 + "2/64", "dev", NS_IF, "nodad", ns=NS)
        ip("ip", "link", "set", NS_IF, "up", ns=NS)
        ip("ip", "link", "set", "lo", "up", ns=NS)
        yield rules
    finally:
        for tool, rule in rules:
            subprocess.run([tool, "-t", "nat", "-D", *rule], capture_output=True)
        subprocess.run(["ip", "link", "del", HOST_IF], capture_output=True)
        subprocess.run(["ip", "netns", "del", NS], capture_output=True)


@pytest.fixture(scope="module")
def env(net):
    d = tempfile.mkdtemp(prefix="eg-transparent-")
    pki = Pki(d)
    # The origin's certificate names the addresses the client dials and a DNS name.
    key, crt = _leaf(d, "veth-origin", "origin-root",
                     f"DNS:localhost,IP:{NET4}1,IP:{NET6}1,IP:127.0.0.1")
    origin4 = BoundOrigin(NET4 + "1", crt, key, socket.AF_INET)
    origin6 = BoundOrigin(NET6 + "1", crt, key, socket.AF_INET6)
    loop_origin = Origin(crt, key)
    tport = free_port()
    sport = free_port()
    proxy = Proxy(BIN, pki, d, "--transparent-port", str(tport),
                  "--sni-port", str(sport), "--sni-upstream-port", str(loop_origin.port),
                  "--client-cidr", NET4 + "0/30", "--client-cidr", NET6 + "/64",
                  "--client-cidr", "127.0.0.0/8", "--client-cidr", "::1/128",
                  "--allow", "localhost", "--allow", NET4 + "1", "--mode", "enforce", listen="[::]:0")
    for tool, dest_port, origin in (("iptables", origin4.port, origin4), ("ip6tables", origin6.port, origin6)):
        rule = ["PREROUTING", "-i", HOST_IF, "-p", "tcp", "--dport", str(dest_port), "-j", "REDIRECT",
                "--to-ports", str(tport)]
        subprocess.run([tool, "-t", "nat", "-A", *rule], check=True, capture_output=True)
        net.append((tool, rule))
    yield {"pki": pki, "proxy": proxy, "origin4": origin4, "origin6": origin6, "loop": loop_origin,
           "tport": tport, "sport": sport}
    proxy.stop()
    origin4.close()
    origin6.close()
    loop_origin.close()


def curl_in_ns(env, url, *extra, resolve=None):
    args = ["ip", "netns", "exec", NS, "curl", "-sS", "--max-time", "10", "--noproxy", "*",
            "--cacert", env["pki"].path("cluster-ca.pem"), "-w", "\n%{http_code}"]
    if resolve:
        args += ["--resolve", resolve]
    r = subprocess.run(args + list(extra) + [url], capture_output=True, text=True)
    body, _, code = r.stdout.rpartition("\n")
    return int(code or 0), body, r.stderr


def test_redirected_ipv4_connection_is_bumped_with_the_cluster_ca(env):
    o = env["origin4"]
    # The client trusts only the cluster CA: a 200 proves the proxy terminated TLS.
    code, body, err = curl_in_ns(env, f"https://localhost:{o.port}/hello",
                                 resolve=f"localhost:{o.port}:{NET4}1")
    assert code == 200, err
    assert body == "ok\n"
    v = env["proxy"].wait_verdict(lambda v: v.get("mode") == "bump" and v.get("path") == "/hello")
    assert v["host"] == "localhost"
    assert v["port"] == o.port
    assert v["client_address"].removeprefix("::ffff:").startswith(NET4 + "2:")


def test_redirected_ipv6_connection_is_bumped(env):
    o = env["origin6"]
    code, body, err = curl_in_ns(env, f"https://localhost:{o.port}/v6",
                                 resolve=f"localhost:{o.port}:[{NET6}1]")
    assert code == 200, err
    v = env["proxy"].wait_verdict(lambda v: v.get("path") == "/v6")
    assert v["mode"] == "bump" and v["port"] == o.port


def test_redirected_card_upload_is_blocked_before_it_reaches_the_origin(env):
    o = env["origin4"]
    before = o.state.received("/upload")
    code, _, err = curl_in_ns(env, f"https://localhost:{o.port}/upload", "--data-binary",
                              "card=4539 1488 0343 6467", resolve=f"localhost:{o.port}:{NET4}1")
    assert code == 403, err
    assert o.state.received("/upload") == before
    env["proxy"].wait_verdict(lambda v: v.get("path") == "/upload" and v.get("action") == "BLOCK")


def test_redirected_connection_without_sni_is_judged_by_address(env):
    o = env["origin4"]
    # An IP URL sends no SNI: policy and certificate check use the dialled address.
    code, _, err = curl_in_ns(env, f"https://{NET4}1:{o.port}/by-ip")
    assert code == 200, err
    v = env["proxy"].wait_verdict(lambda v: v.get("path") == "/by-ip")
    assert v["host"] == NET4 + "1"


def test_destination_outside_the_allow_list_is_refused(env):
    o = env["origin6"]
    # The v6 address is not on the allow-list; without SNI the address is what is judged.
    code, _, _ = curl_in_ns(env, f"https://[{NET6}1]:{o.port}/denied")
    assert code == 0
    env["proxy"].wait_verdict(lambda v: v.get("mode") == "refuse" and v.get("host") == NET6 + "1"
                              and "destination_not_allowed" in v.get("reason", ""))


def test_dialling_the_transparent_port_directly_is_refused(env):
    r = subprocess.run(["curl", "-sS", "--max-time", "5", "--noproxy", "*", "-k",
                        f"https://127.0.0.1:{env['tport']}/"], capture_output=True, text=True)
    assert r.returncode != 0
    env["proxy"].wait_verdict(lambda v: "no_original_destination" in v.get("reason", ""))
    assert env["proxy"].alive()


def test_sni_listener_takes_the_destination_from_the_client_hello(env):
    sport = env["sport"]
    r = subprocess.run(["curl", "-sS", "--max-time", "10", "--noproxy", "*",
                        "--cacert", env["pki"].path("cluster-ca.pem"),
                        "--resolve", f"localhost:{sport}:127.0.0.1", f"https://localhost:{sport}/via-sni"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout == "ok\n", r.stderr
    v = env["proxy"].wait_verdict(lambda v: v.get("path") == "/via-sni")
    assert v["host"] == "localhost" and v["port"] == env["loop"].port and v["mode"] == "bump"


def test_sni_listener_refuses_a_client_hello_without_a_name(env):
    sport = env["sport"]
    r = subprocess.run(["curl", "-sS", "--max-time", "5", "--noproxy", "*", "-k",
                        f"https://127.0.0.1:{sport}/no-sni"], capture_output=True, text=True)
    assert r.returncode != 0
    env["proxy"].wait_verdict(lambda v: v.get("reason", "").startswith("no_sni"))
    assert env["proxy"].alive()
