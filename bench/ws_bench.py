#!/usr/bin/python3
"""The WebSocket benchmark (issue 17): a TLS WebSocket origin reached directly and through
`egressguard proxy` (CONNECT, bumped TLS, enforce mode, the default pack), side by side in
ONE run on loopback, and the proxy's CPU per MB of WebSocket payload against its CPU per MB
of an HTTP/1.1 upload of the same bytes through the same proxy process.

  bench/ws_bench.py [--bin PATH] [--reps N] [--quick] [--out FILE] [--mode enforce|monitor]
                    [--small-count N] [--large-count N] [--ack each|final] [--deflate]
                    [--no-pin] [--eg-args "..."] [--keep]

Workloads, each one WebSocket connection (text messages of JSON chat events and event
batches: ids, numbers, words and base64 attachment text, no PII; checked clean with
`egressguard scan` before anything is timed):
  ws 1 KiB   --small-count messages of 1,024 bytes (default 40,000; --quick 10,000)
  ws 1 MiB   --large-count messages of 1,048,576 bytes (default 64; --quick 32)
  http       one HTTP/1.1 POST (Content-Length, text/plain) of the same total bytes as each
             WebSocket workload, to an HTTPS origin on loopback: the CPU baseline.
The origin acknowledges every message (--ack each: a short text frame per message, the
client keeps at most 256 small / 4 large messages unacknowledged) or once after the last
one (--ack final); either way the clock stops when the client holds the last ack, so the
figures are delivered throughput. The HTTP upload stops on the origin's 200, which it sends
after counting the whole body.

Targets: direct (client -> origin) and egressguard (client -> proxy -> origin). The client
trusts only the proxy's CA for the proxied target, so every proxied byte went through
interception. Targets run interleaved (round-robin per workload, the first target rotating
each repetition), --reps times (default 5; --quick 3); cells are medians. Proxy CPU is
utime+stime of the proxy process (all threads) from /proc/PID/stat before and after each
run, over the payload bytes (MB = 10^6 bytes); the ws/http ratio is taken per repetition,
then the median. That figure moves in clock ticks (10 ms): the default sizes keep the
smallest run (the 41 MB upload) near 30 ticks; --quick figures are rougher.

Pinning (unless --no-pin, or fewer than two usable cores): the proxy on the first usable
core with one worker, the client and the origin on the second. The client and the origin
are Python (python3-websockets, asyncio); they, not the proxy, may bound messages/s, while
the CPU-per-MB figures are the proxy's alone.

--mode monitor runs the proxy in monitor mode (before issue 17 the binary refuses Upgrades
in enforce mode). --eg-args adds proxy flags (e.g. "--scan-responses"). --deflate makes
both ends negotiate permessage-deflate (the payload figures stay uncompressed bytes).
--keep keeps the work directory (PKI, logs, audit log). Installs python3-websockets and
openssl with apt-get on first use. Nothing but loopback is touched. Default run about
3 minutes, --quick under 30 s.
"""
import argparse
import asyncio
import json
import os
import platform
import random
import shlex
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SYS_PY = "/usr/bin/python3"
KIB = 1024
MIB = 1024 * 1024
SMALL_WINDOW = 256
LARGE_WINDOW = 4
RUN_TIMEOUT = 180.0


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def die(msg):
    print(f"ws_bench: {msg}", file=sys.stderr, flush=True)
    sys.exit(2)


# --- packages -------------------------------------------------------------------------------
def ensure_packages():
    """Debian's python3-websockets (and openssl); re-executes under /usr/bin/python3 when
    the interpreter running this (a pyenv, a venv) does not see Debian's packages."""
    try:
        import websockets  # noqa: F401
        have_ws = True
    except ImportError:
        have_ws = False
    if not have_ws and os.path.realpath(sys.executable) != os.path.realpath(SYS_PY) and os.access(SYS_PY, os.X_OK):
        probe = subprocess.run([SYS_PY, "-c", "import websockets"], capture_output=True)
        if probe.returncode == 0:
            os.execv(SYS_PY, [SYS_PY, os.path.abspath(__file__), *sys.argv[1:]])
    need = []
    if not have_ws:
        need.append("python3-websockets")
    if shutil.which("openssl") is None:
        need.append("openssl")
    if not need:
        return
    if os.geteuid() != 0:
        die(f"needs {' '.join(need)}: run as root (apt-get) or install them")
    log(f"installing {' '.join(need)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], capture_output=True, env=env)
    r = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *need],
                       capture_output=True, text=True, env=env)
    if r.returncode != 0:
        die(f"apt-get install {' '.join(need)} failed: {r.stderr[-500:]}")
    if not have_ws:
        # apt installs for Debian's interpreter: run again under it.
        os.execv(SYS_PY, [SYS_PY, os.path.abspath(__file__), *sys.argv[1:]])


# --- payloads -------------------------------------------------------------------------------
WORDS = ("the build is green again after the retry, moving the rollout to the next ring "
         "please review the dashboard before standup we saw latency climb on the eu pool "
         "shipping notes attached thanks for the quick turnaround on the cache fix ok lgtm "
         "ticket moved to done reopening because the flaky test came back on arm runners").split()
EVENT_TYPES = ("page_view", "click", "scroll", "form_focus", "search", "add_to_cart", "video_progress")
PAGES = ("/app/inbox", "/app/board/roadmap", "/docs/getting-started", "/settings/notifications", "/app/reports")


def _id(rng, prefix, n=12):
    return prefix + "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") + rng.choice("0123456789abcdef")
                            for _ in range(n // 2))


def _b64(rng, n):
    import base64
    return base64.b64encode(rng.randbytes(n * 3 // 4 + 3)).decode()[:n]


def _fit(obj, size, rng, field_path):
    """Serialises obj with the base64 field at field_path sized so the JSON is `size` bytes."""
    holder = obj
    for k in field_path[:-1]:
        holder = holder[k]
    key = field_path[-1]
    holder[key] = ""
    base = len(json.dumps(obj, separators=(",", ":")))
    if base > size:
        raise ValueError(f"message skeleton {base} > {size}")
    holder[key] = _b64(rng, size - base)
    s = json.dumps(obj, separators=(",", ":"))
    assert len(s) == size, (len(s), size)
    return s


def chat_message(rng, i):
    """A 1 KiB chat event: ids, numbers, words and a small base64 thumbnail."""
    obj = {
        "type": "chat.message", "id": _id(rng, "msg_"), "room": _id(rng, "room_", 8), "seq": i,
        "ts": f"2026-12-05T{rng.randrange(24):02}:{rng.randrange(60):02}:{rng.randrange(60):02}Z",
        "user": {"id": _id(rng, "u_", 10), "name": rng.choice(WORDS).title() + " " + rng.choice(WORDS).title(),
                 "presence": rng.choice(("online", "away", "busy"))},
        "text": " ".join(rng.choice(WORDS) for _ in range(rng.randrange(20, 40))),
        "reactions": {"thumbs_up": rng.randrange(20), "eyes": rng.randrange(5)},
        "client": {"rtt_ms": round(rng.uniform(5, 90), 1), "queue": rng.randrange(50), "v": "4.18.2"},
        "attachment": {"name": f"thumb-{rng.randrange(1000)}.webp", "type": "image/webp", "data": None},
    }
    return _fit(obj, KIB, rng, ("attachment", "data"))


def event_batch(rng, i):
    """A 1 MiB analytics batch: thousands of small events, then a base64 screenshot."""
    events = []
    size = 0
    while size < MIB * 3 // 4:
        ev = {"t": rng.choice(EVENT_TYPES), "id": _id(rng, "ev_", 10), "s": _id(rng, "s_", 8),
              "page": rng.choice(PAGES), "x": rng.randrange(1920), "y": rng.randrange(1080),
              "dur_ms": rng.randrange(4000), "score": round(rng.random(), 3),
              "label": rng.choice(WORDS)}
        events.append(ev)
        size += len(json.dumps(ev, separators=(",", ":"))) + 1
    obj = {"type": "analytics.batch", "batch": i, "app": "board-web", "build": "2026.12.1",
           "events": events, "screenshot": {"type": "image/png", "data": None}}
    return _fit(obj, MIB, rng, ("screenshot", "data"))


def make_payloads(small_distinct, large_distinct):
    rng = random.Random(17)
    small = [chat_message(rng, i) for i in range(small_distinct)]
    large = [event_batch(rng, i) for i in range(large_distinct)]
    return small, large


def check_clean(binary, work, small, large):
    """Every distinct message through `egressguard scan` (the default pack): nothing found."""
    d = os.path.join(work, "payloads")
    os.makedirs(d, exist_ok=True)
    paths = []
    for name, msgs in (("small", small), ("large", large)):
        for i, m in enumerate(msgs):
            p = os.path.join(d, f"{name}-{i}.json")
            with open(p, "w") as f:
                f.write(m)
            paths.append(p)
    r = subprocess.run([binary, "scan", "--content-type", "application/json", *paths], capture_output=True, text=True)
    if r.returncode != 0:
        die(f"the bench payloads are not clean for the default pack (scan exit {r.returncode}):\n"
            f"{r.stdout[:2000]}{r.stderr[:1000]}")
    return len(paths)


# --- PKI ------------------------------------------------------------------------------------
def make_pki(work):
    sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
    try:
        from proxy_helpers import _leaf, _openssl_ca  # the tests' openssl CLI recipes
    except ImportError as e:
        die(f"cannot import tests/integration/proxy_helpers.py: {e}")
    _openssl_ca(work, "cluster-ca", 30)
    _openssl_ca(work, "origin-root", 30)
    key, crt = _leaf(work, "origin", "origin-root", "DNS:localhost,IP:127.0.0.1")
    return {"cluster": os.path.join(work, "cluster-ca.pem"), "cluster_key": os.path.join(work, "cluster-ca.key"),
            "origin_root": os.path.join(work, "origin-root.pem"), "origin_crt": crt, "origin_key": key}


# --- origin (its own process) ---------------------------------------------------------------
async def origin_main(crt, key, deflate):
    import websockets
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)

    async def ws_handler(ws, path=None):
        path = getattr(ws, "path", path) or "/"
        q = dict(kv.split("=", 1) for kv in path.partition("?")[2].split("&") if "=" in kv)
        final = q.get("ack") == "final"
        expect = int(q.get("n", "0"))
        n = total = 0
        async for msg in ws:
            n += 1
            total += len(msg)
            if not final or n == expect:
                await ws.send(f"{n} {total}")

    async def http_handler(reader, writer):
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                k, _, v = line.partition(b":")
                if k.strip().lower() == b"content-length":
                    length = int(v)
            got = 0
            while got < length:
                piece = await reader.read(min(length - got, 1 << 20))
                if not piece:
                    break
                got += len(piece)
            body = json.dumps({"len": got}).encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                         b"Connection: close\r\n\r\n%s" % (len(body), body))
            await writer.drain()
        except Exception:
            pass
        finally:
            writer.close()

    ws_server = await websockets.serve(ws_handler, "127.0.0.1", 0, ssl=ctx, compression="deflate" if deflate else None,
                                       max_size=None, max_queue=None, ping_interval=None, write_limit=1 << 20)
    http_server = await asyncio.start_server(http_handler, "127.0.0.1", 0, ssl=ctx, limit=1 << 20)
    print(f"PORTS {ws_server.sockets[0].getsockname()[1]} {http_server.sockets[0].getsockname()[1]}", flush=True)
    await asyncio.Event().wait()


# --- the proxy ------------------------------------------------------------------------------
def cpu_seconds(pid):
    """utime + stime of a process (all its threads, live and exited) from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pin(cpu):
    return (lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None


def start_proxy(binary, pki, work, mode, workers, cpu, extra):
    audit = os.path.join(work, "audit.jsonl")
    args = [binary, "proxy", "--listen", "127.0.0.1:0", "--ca-cert", pki["cluster"], "--ca-key", pki["cluster_key"],
            "--upstream-ca", pki["origin_root"], "--upstream-ca-only", "--mode", mode, "--workers", str(workers),
            "--allow", "localhost", "--allow", "127.0.0.1", "--audit-log", audit, *extra]
    out = open(os.path.join(work, "egressguard.out"), "w+")
    err = open(os.path.join(work, "egressguard.err"), "w")
    proc = subprocess.Popen(args, stdout=out, stderr=err, preexec_fn=pin(cpu))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        out.seek(0)
        for line in out.read().splitlines():
            if "listening on " in line:
                port = int(line.split("listening on ")[1].split()[0].rsplit(":", 1)[1])
                return proc, port, audit, args
        if proc.poll() is not None:
            with open(os.path.join(work, "egressguard.err")) as f:
                die(f"egressguard exited at start ({proc.returncode}): {f.read()[-1000:]}")
        time.sleep(0.05)
    proc.kill()
    die("egressguard did not report its port")


def tunnel(proxy_port, host, port, timeout=10):
    s = socket.create_connection(("127.0.0.1", proxy_port), timeout=timeout)
    s.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
    resp = b""
    while b"\r\n\r\n" not in resp:
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionError(f"proxy closed during CONNECT: {resp!r}")
        resp += chunk
    status = int(resp.split(b" ", 2)[1])
    if status != 200:
        first = resp.split(b"\r\n", 1)[0].decode(errors="replace")
        raise ConnectionError(f"CONNECT answered {first}")
    return s


class Env:
    def __init__(self, pki, ws_port, http_port, proxy_port):
        self.pki, self.ws_port, self.http_port, self.proxy_port = pki, ws_port, http_port, proxy_port
        self.ctx = {}
        for t, ca in (("direct", pki["origin_root"]), ("egressguard", pki["cluster"])):
            c = ssl.create_default_context(cafile=ca)  # this CA only: no system store
            self.ctx[t] = c

    def sock(self, target, port):
        if target == "direct":
            return socket.create_connection(("127.0.0.1", port), timeout=10)
        return tunnel(self.proxy_port, "localhost", port)


def issuer_cn(ssl_obj):
    cert = ssl_obj.getpeercert() or {}
    for rdn in cert.get("issuer", ()):
        for k, v in rdn:
            if k == "commonName":
                return v
    return "?"


# --- the client -----------------------------------------------------------------------------
async def ws_run(env, target, msgs, count, window, ack, deflate):
    """One connection, `count` messages cycling over `msgs`; returns (seconds, bytes, issuer)."""
    import websockets
    sock = env.sock(target, env.ws_port)
    sock.setblocking(False)
    uri = f"wss://localhost:{env.ws_port}/ws?n={count}&ack={ack}"
    total = sum(len(msgs[i % len(msgs)]) for i in range(count))
    async with websockets.connect(uri, sock=sock, ssl=env.ctx[target], server_hostname="localhost",
                                  compression="deflate" if deflate else None, max_size=None, max_queue=None,
                                  ping_interval=None, write_limit=1 << 20, open_timeout=15, close_timeout=10) as ws:
        issuer = issuer_cn(ws.transport.get_extra_info("ssl_object"))
        sem = asyncio.Semaphore(window if ack == "each" else count + 1)
        last = [None]

        async def reader():
            want = count if ack == "each" else 1
            try:
                for _ in range(want):
                    last[0] = await ws.recv()
                    sem.release()
            finally:  # done or failed (a close from the proxy): never leave the sender waiting
                for _ in range(window + 1):
                    sem.release()

        t0 = time.perf_counter()
        rt = asyncio.create_task(reader())
        n = len(msgs)
        for i in range(count):
            await sem.acquire()
            if rt.done():  # the reader failed (a close from the proxy): stop sending
                break
            await ws.send(msgs[i % n])
        await rt
        t1 = time.perf_counter()
    got_n, got_bytes = (int(x) for x in last[0].split())
    if got_n != count or got_bytes != total:
        raise RuntimeError(f"origin acknowledged {got_n} messages / {got_bytes} bytes, sent {count} / {total}")
    return t1 - t0, total, issuer


def http_run(env, target, body):
    """One POST of `body` (Content-Length); returns (seconds, bytes, issuer)."""
    raw = env.sock(target, env.http_port)
    raw.settimeout(RUN_TIMEOUT)
    s = env.ctx[target].wrap_socket(raw, server_hostname="localhost")
    try:
        issuer = issuer_cn(s)
        t0 = time.perf_counter()
        s.sendall(b"POST /upload HTTP/1.1\r\nHost: localhost:%d\r\nContent-Type: text/plain\r\n"
                  b"Content-Length: %d\r\n\r\n" % (env.http_port, len(body)))
        mv = memoryview(body)
        for off in range(0, len(body), MIB):
            s.sendall(mv[off:off + MIB])
        resp = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            resp += chunk
            head, sep, rest = resp.partition(b"\r\n\r\n")
            if sep and b"content-length:" in head.lower():
                cl = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                if len(rest) >= cl:
                    break
        t1 = time.perf_counter()
    finally:
        s.close()
    status = resp.split(b" ", 2)[1] if resp.startswith(b"HTTP/") else b"?"
    if status != b"200":
        raise RuntimeError(f"upload answered {resp[:200]!r}")
    got = json.loads(resp.partition(b"\r\n\r\n")[2])["len"]
    if got != len(body):
        raise RuntimeError(f"origin received {got} of {len(body)} bytes")
    return t1 - t0, len(body), issuer


# --- main -----------------------------------------------------------------------------------
def parse_args():
    p = argparse.ArgumentParser(description="WebSocket through egressguard vs direct, and WS vs HTTP CPU per MB",
                                usage=None)
    p.add_argument("--bin", default=os.environ.get("EGRESSGUARD_BIN") or os.path.join(ROOT, "build/appliance/egressguard"))
    p.add_argument("--reps", type=int, default=None, help="repetitions of the round-robin (default 5; --quick 3)")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default="")
    p.add_argument("--mode", choices=("enforce", "monitor"), default="enforce")
    p.add_argument("--small-count", type=int, default=None, help="1 KiB messages per run (default 40000; --quick 10000)")
    p.add_argument("--large-count", type=int, default=None, help="1 MiB messages per run (default 64; --quick 32)")
    p.add_argument("--ack", choices=("each", "final"), default="each")
    p.add_argument("--deflate", action="store_true", help="negotiate permessage-deflate")
    p.add_argument("--no-pin", action="store_true")
    p.add_argument("--eg-args", default="", help="extra egressguard proxy flags (one shell-quoted string)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--origin-serve", nargs=3, metavar=("CRT", "KEY", "DEFLATE"), help=argparse.SUPPRESS)
    a = p.parse_args()
    a.reps = a.reps if a.reps is not None else (3 if a.quick else 5)
    a.small_count = a.small_count if a.small_count is not None else (10000 if a.quick else 40000)
    a.large_count = a.large_count if a.large_count is not None else (32 if a.quick else 64)
    if a.reps < 1 or a.small_count < 1 or a.large_count < 1:
        p.error("--reps and the counts must be at least 1")
    return a


def median(xs):
    return statistics.median(xs) if xs else None


def fmt(v, digits=1):
    if v is None:
        return "-"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.{digits}f}"


def main():
    a = parse_args()
    if a.origin_serve:
        crt, key, deflate = a.origin_serve
        asyncio.run(origin_main(crt, key, deflate == "1"))
        return
    ensure_packages()
    import websockets
    binary = os.path.abspath(a.bin)
    if not os.access(binary, os.X_OK):
        die(f"no egressguard binary at '{a.bin}': build it (./scripts/build.sh) or pass --bin")
    for k in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        os.environ.pop(k, None)

    cpus = sorted(os.sched_getaffinity(0))
    pinned = not a.no_pin and len(cpus) >= 2
    proxy_cpu, client_cpu = (cpus[0], cpus[1]) if pinned else (None, None)
    workers = 1 if pinned else 2
    if pinned:
        os.sched_setaffinity(0, {client_cpu})  # the origin, started from here, inherits it

    work = tempfile.mkdtemp(prefix="egressguard-wsbench.")
    procs = []

    def cleanup():
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in reversed(procs):
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if a.keep:
            print(f"ws_bench: work directory kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)

    try:
        run_bench(a, binary, work, procs, pinned, proxy_cpu, client_cpu, workers, websockets.version.version)
    finally:
        cleanup()


def run_bench(a, binary, work, procs, pinned, proxy_cpu, client_cpu, workers, ws_version):
    t_start = time.monotonic()
    log(f"PKI and payloads in {work}")
    pki = make_pki(work)
    small, large = make_payloads(512, 4)
    nfiles = check_clean(binary, work, small, large)
    small_total = sum(len(small[i % len(small)]) for i in range(a.small_count))
    large_total = sum(len(large[i % len(large)]) for i in range(a.large_count))
    # The HTTP bodies: exactly the bytes the WebSocket runs send, concatenated.
    bodies = {}
    for name, msgs, count in (("small", small, a.small_count), ("large", large, a.large_count)):
        bodies[name] = "".join(msgs[i % len(msgs)] for i in range(count)).encode()

    origin = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--origin-serve", pki["origin_crt"],
                               pki["origin_key"], "1" if a.deflate else "0"],
                              stdout=subprocess.PIPE, stderr=open(os.path.join(work, "origin.err"), "w"), text=True)
    procs.append(origin)
    line = origin.stdout.readline()
    if not line.startswith("PORTS "):
        with open(os.path.join(work, "origin.err")) as f:
            die(f"origin did not start: {line}{f.read()[-1000:]}")
    ws_port, http_port = (int(x) for x in line.split()[1:3])

    extra = shlex.split(a.eg_args)
    proxy, proxy_port, audit, proxy_argv = start_proxy(binary, pki, work, a.mode, workers, proxy_cpu, extra)
    procs.append(proxy)
    env = Env(pki, ws_port, http_port, proxy_port)
    targets = ["direct", "egressguard"]
    version = subprocess.run([binary, "version"], capture_output=True, text=True).stdout.splitlines()
    version = " ".join(version[0].split()) if version else "?"

    # Every target must carry a WebSocket and an upload before anything is timed.
    issuers = {}
    for t in targets:
        try:
            _, _, iss = asyncio.run(asyncio.wait_for(ws_run(env, t, small, 2, 2, a.ack, a.deflate), 30))
            _, _, iss2 = http_run(env, t, bodies["small"][:KIB])
        except Exception as e:
            hint = ""
            if t == "egressguard" and a.mode == "enforce":
                hint = ("\n(a binary without the issue-17 WebSocket inspector refuses Upgrades in enforce mode, "
                        "or with --raw-relay holds the stream: try --mode monitor)")
            with open(os.path.join(work, "egressguard.err")) as f:
                err_tail = f.read()[-800:]
            die(f"{t} does not carry a WebSocket / upload: {type(e).__name__}: {e}{hint}\negressguard stderr: {err_tail}")
        issuers[t] = iss
    log(f"ready: origin ws :{ws_port} http :{http_port}, egressguard :{proxy_port} ({a.mode}); "
        f"leaf issuers: " + ", ".join(f"{t}={i}" for t, i in issuers.items()))

    workloads = [
        ("ws_small", lambda t: asyncio.run(asyncio.wait_for(
            ws_run(env, t, small, a.small_count, SMALL_WINDOW, a.ack, a.deflate), RUN_TIMEOUT)), a.small_count),
        ("ws_large", lambda t: asyncio.run(asyncio.wait_for(
            ws_run(env, t, large, a.large_count, LARGE_WINDOW, a.ack, a.deflate), RUN_TIMEOUT)), a.large_count),
        ("http_small", lambda t: http_run(env, t, bodies["small"]), 1),
        ("http_large", lambda t: http_run(env, t, bodies["large"]), 1),
    ]
    res = {}  # (metric, target) -> [samples]
    cpu_by_rep = {}  # (workload, rep) -> proxy CPU s/MB
    errors = []

    def add(key, t, v):
        res.setdefault((key, t), []).append(v)

    for rep in range(a.reps):
        for wname, fn, nmsg in workloads:
            for k in range(len(targets)):
                t = targets[(k + rep) % len(targets)]
                c0 = cpu_seconds(proxy.pid)
                try:
                    secs, nbytes, _ = fn(t)
                except Exception as e:
                    errors.append(f"rep {rep + 1} {wname} {t}: {type(e).__name__}: {e}")
                    log(f"  {errors[-1]}")
                    if proxy.poll() is not None:
                        die(f"egressguard died (exit {proxy.returncode}); see {work} (--keep keeps it)")
                    continue
                if t == "egressguard":
                    time.sleep(0.1)  # the proxy finishes the close (verdict, audit line) on its own time
                    cpu = cpu_seconds(proxy.pid) - c0
                    cpu_mb = cpu / (nbytes / 1e6)
                    add(wname + "_cpu", t, cpu_mb * 1e3)  # ms per MB
                    cpu_by_rep[(wname, rep)] = cpu_mb
                add(wname + "_mbs", t, nbytes / secs / 1e6)
                if wname.startswith("ws"):
                    add(wname + "_msgs", t, nmsg / secs)
        log(f"rep {rep + 1}/{a.reps} done ({time.monotonic() - t_start:.0f} s)")

    ratios = {}
    for size in ("small", "large"):
        ratios[size] = [cpu_by_rep[("ws_" + size, r)] / cpu_by_rep[("http_" + size, r)]
                        for r in range(a.reps)
                        if ("ws_" + size, r) in cpu_by_rep and ("http_" + size, r) in cpu_by_rep
                        and cpu_by_rep[("http_" + size, r)] > 0]

    # Verdicts: nothing may have been blocked; which protocol the proxy saw.
    time.sleep(0.3)
    actions, protocols, findings = {}, {}, {}
    try:
        with open(audit) as f:
            for l in f:
                if not l.strip():
                    continue
                v = json.loads(l)
                actions[v.get("action", "?")] = actions.get(v.get("action", "?"), 0) + 1
                proto = v.get("protocol") or v.get("method") or "(none)"
                protocols[proto] = protocols.get(proto, 0) + 1
                for fd in v.get("findings", []) or []:
                    k = f"{fd.get('rule_id', '?')} on {proto}"
                    findings[k] = findings.get(k, 0) + 1
    except OSError:
        pass

    med = {k: median(v) for k, v in res.items()}

    def ratio(x, y):
        return f"{x / y:.2f}" if x is not None and y else "-"

    lines = []
    P = lines.append
    P(f"egressguard WebSocket benchmark  {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}  "
      f"{os.cpu_count()} cores, loopback, {platform.release()}")
    P(f"egressguard: {binary} ({version}); proxy --mode {a.mode}, default pack, --workers {workers}, audit log on"
      + (f", extra: {a.eg_args}" if a.eg_args else ""))
    P(f"client and origin: Python {platform.python_version()}, websockets {ws_version} (asyncio), "
      f"{ssl.OPENSSL_VERSION}; permessage-deflate {'on' if a.deflate else 'off'}")
    P("pinning: " + (f"proxy on core {proxy_cpu}, client and origin on core {client_cpu} (sched_setaffinity, as taskset -c)"
                     if pinned else "none"))
    P(f"reps={a.reps}; ws 1 KiB: {a.small_count} x 1,024 B = {small_total / 1e6:.1f} MB; "
      f"ws 1 MiB: {a.large_count} x 1,048,576 B = {large_total / 1e6:.1f} MB; "
      f"ack={a.ack}" + (f" (window {SMALL_WINDOW} / {LARGE_WINDOW} messages)" if a.ack == "each" else "")
      + "; cells are medians")
    P("")
    P(f"{'throughput':<34}{'direct':>12}{'egressguard':>13}{'eg/direct':>11}")
    for key, label in (("ws_small_msgs", "ws 1 KiB messages/s"), ("ws_small_mbs", "ws 1 KiB MB/s"),
                       ("ws_large_msgs", "ws 1 MiB messages/s"), ("ws_large_mbs", "ws 1 MiB MB/s"),
                       ("http_small_mbs", f"http upload {small_total / 1e6:.1f} MB, MB/s"),
                       ("http_large_mbs", f"http upload {large_total / 1e6:.1f} MB, MB/s")):
        d, e = med.get((key, "direct")), med.get((key, "egressguard"))
        P(f"{label:<34}{fmt(d):>12}{fmt(e):>13}{ratio(e, d):>11}")
    P("")
    P(f"{'proxy CPU ms per MB':<34}{'websocket':>12}{'http upload':>13}{'ws/http':>11}  issue-17 goal")
    for size, label in (("small", f"1 KiB messages ({small_total / 1e6:.1f} MB)"),
                        ("large", f"1 MiB messages ({large_total / 1e6:.1f} MB)")):
        w, h = med.get(("ws_" + size + "_cpu", "egressguard")), med.get(("http_" + size + "_cpu", "egressguard"))
        r = median(ratios[size])
        P(f"{label:<34}{fmt(w, 2):>12}{fmt(h, 2):>13}{(f'{r:.2f}' if r is not None else '-'):>11}  <= 1.2")
    P("")
    P("messages/s and MB/s: payload bytes over the time from the first send to the last ack (one connection);")
    P("CPU: utime+stime of the proxy process (/proc/PID/stat) from before the connection to 0.1 s after its close,")
    P(f"over the payload; ws/http is per repetition (same rep, same bytes), then the median. CPU tick "
      f"{1000 / os.sysconf('SC_CLK_TCK'):.0f} ms.")
    P("http upload: one POST, Content-Length, text/plain, the WebSocket runs' bytes concatenated; ends on the 200.")
    P(f"payloads: {len(small)} distinct 1 KiB chat events and {len(large)} distinct 1 MiB event batches (JSON: ids, "
      f"numbers, words, base64), {nfiles} files clean by `egressguard scan`.")
    P("client-side leaf issuer: " + ", ".join(f"{t}: {i}" for t, i in issuers.items())
      + " (the client trusts only the proxy's CA through the proxy)")
    P("proxy verdicts: " + (", ".join(f"{k} {v}" for k, v in sorted(actions.items())) or "none")
      + "; protocol/method: " + (", ".join(f"{k} {v}" for k, v in sorted(protocols.items())) or "-")
      + "; findings: " + (", ".join(f"{k} x{v}" for k, v in sorted(findings.items())) or "none"))
    if findings:
        P("  (the payloads are clean: findings here come from the proxy scanning something other than them,"
          " e.g. masked frames relayed raw)")
    P("raw samples (per rep):")
    for (key, t), v in sorted(res.items()):
        P(f"  {key},{t}: " + " ".join(fmt(x, 2) for x in v))
    for size in ("small", "large"):
        P(f"  cpu_ratio_{size}: " + " ".join(f"{x:.2f}" for x in ratios[size]))
    if errors:
        P("errors:")
        for e in errors:
            P("  " + e)
    P(f"run time {time.monotonic() - t_start:.0f} s")
    table = "\n".join(lines) + "\n"
    sys.stdout.write(table)
    if a.out:
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
        with open(a.out, "w") as f:
            f.write(table)
        log(f"written to {a.out}")
    if errors:
        sys.exit(1)


if __name__ == "__main__":
    main()
