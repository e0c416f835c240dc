"""Nothing leaves undecided (issue 16), probed as an attacker would: the real binary in
enforce mode with the shipped pack, a raw TLS origin on loopback that records every byte it
receives, and a raw client that writes exact bytes with controlled write boundaries.

- Past the hold limit: a card / IBAN / PEM private key / bulk CSV at the very end of an
  upload (Content-Length or chunked; whole, or split across the last two writes at every
  offset of the value; the terminator in the same or a later write) never reaches the
  origin, the client gets 403, the origin connection is closed, and the verdict says BLOCK
  with bytes_out_before_block. The offset sweeps use a 64 KiB hold limit and 256 KiB bodies
  (the same streaming path); 20 MiB and 64 MiB run a few times with the default 16 MiB.
- HTTP/1.1 differentials: chunk extensions and trailers never reach the origin (the proxy
  re-frames), leading empty lines are ignored, tabs / a leading space in the request line
  are refused with 400, and a bumped stream that is not HTTP is refused unless --raw-relay
  allows it (then relayed without its undecided tail).
- Every verdict's action matches what the origin received; monitor mode is unchanged."""
import concurrent.futures
import hashlib
import itertools
import shutil
import tempfile
import threading

import pytest

import leak_helpers as L
from leak_helpers import summary, sweep
from proxy_helpers import Pki, Proxy

KIB = 1 << 10
MIB = 1 << 20
SMALL_HOLD = 64 * KIB           # the sweep proxy's --hold-limit
SWEEP_BODY = 256 * KIB          # > SMALL_HOLD: streamed past the hold
DEFAULT_HOLD = 16 * MIB         # the shipped --hold-limit
HOST = "127.0.0.1"
_ids = itertools.count(1)


class Env:
    def __init__(self, binary):
        self.binary = binary
        self.dir = tempfile.mkdtemp(prefix="egressguard-noleak-")
        self.pki = Pki(self.dir)
        self.cafile = self.pki.path("cluster-ca.pem")
        self.common = ["--allow", HOST, "--allow", "localhost"]
        self.small = Proxy(binary, self.pki, self.dir, "--mode", "enforce", "--hold-limit", str(SMALL_HOLD),
                           *self.common)
        self.big = Proxy(binary, self.pki, self.dir, "--mode", "enforce", *self.common)  # default hold limit
        self.monitor = Proxy(binary, self.pki, self.dir, "--mode", "monitor", *self.common)
        self.origins = []
        # Every case, for the final cross-check: proxy, origin, what must not reach it (bytes,
        # or a function origin -> leak findings) and, once settled, what the origin got.
        self.cases = {}
        self.logs = {}
        self.lock = threading.Lock()

    def log(self, proxy):
        with self.lock:
            if proxy.audit not in self.logs:
                self.logs[proxy.audit] = L.AuditLog(proxy.audit)
            return self.logs[proxy.audit]

    def origin(self, proxy, value=None):
        """A fresh origin for one case through `proxy`; `value` is what must never reach it
        (bytes, or a function origin -> leak findings) when the proxy enforces."""
        mark = self.log(proxy).count()
        o = L.RawOrigin(self.pki.good[1], self.pki.good[0])
        with self.lock:
            self.origins.append(o)
            self.cases[o] = {"proxy": proxy, "value": value, "facts": None, "mark": mark}
        return o

    def verdicts(self, origin, pred=lambda v: True, timeout=10.0):
        """The verdicts written for this case's origin (waiting up to `timeout` for one)."""
        case = self.cases[origin]
        return self.log(case["proxy"]).wait(origin.port, case["mark"], pred, timeout)

    def facts(self, origin):
        """(leak findings, whether the origin got a complete request) for a case."""
        case = self.cases[origin]
        if case["facts"] is None:
            value = case["value"]
            leaked = value(origin) if callable(value) else (L.leaks(origin, value) if value is not None else [])
            return leaked, bool(origin.completed())
        return case["facts"]

    def settle(self, origin):
        """Records what the origin got once a case is checked, then frees its bytes and its
        listening socket (a sweep makes hundreds of origins)."""
        origin.wait_closed(5)
        self.cases[origin]["facts"] = self.facts(origin)
        origin.release()
        origin.close()

    def close(self):
        for p in (self.small, self.big, self.monitor):
            p.stop()
        for o in self.origins:
            o.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def env(egressguard_bin):
    e = Env(egressguard_bin)
    yield e
    e.close()


@pytest.fixture(scope="module")
def relay(env):
    """An enforce proxy that may relay non-HTTP streams raw to 127.0.0.1 (new flag)."""
    p = Proxy(env.binary, env.pki, env.dir, "--mode", "enforce", "--hold-limit", str(SMALL_HOLD), *env.common,
              "--raw-relay", HOST)
    yield p
    p.stop()


@pytest.fixture(scope="module")
def pem(env):
    return L.pem_private_key(env.pki.path("good.key"))


# ----------------------------------------------------------------------------- one upload
def value_leaks(body, value, value_off):
    """The default leak check: no byte of the value (whole, first half, 8-byte prefix) in
    anything the origin got, and every body it got a prefix of body[:value_off]."""
    def check(origin):
        problems = ["LEAK: %s reached the origin" % ", ".join(found) for found in [L.leaks(origin, value)] if found]
        over = L.body_overrun(origin, body, value_off)
        if over:
            problems.append("LEAK: " + over)
        return problems
    return check


def emails_leak(emails):
    """The bulk check: fewer than the bulk threshold's number of the planted addresses."""
    def check(origin):
        got = len(L.at_tokens(origin) & set(emails))
        if got >= L.BULK_THRESHOLD:
            return ["LEAK: %d of the %d planted e-mail addresses reached the origin" % (got, len(emails))]
        return []
    return check


def blocked_upload(env, proxy, hold_limit, framing, body, value, value_off, split, ctype, gap=0.03,
                   chunk_size=16384, leak_check=None, settle=False):
    """Sends one upload through `proxy` to a fresh origin and returns the list of ways it
    broke the contract for a body that must be blocked (empty: none). With `settle`, each
    later write waits until the origin went quiet (for writes of many MiB, so the proxy has
    forwarded all it would of the earlier ones)."""
    leak_check = leak_check or value_leaks(body, value, value_off)
    origin = env.origin(proxy, leak_check)
    path = "/upload/%d" % next(_ids)
    writes = L.upload_writes(framing, path, HOST, body, split, ctype, chunk_size)
    streamed = len(body) > hold_limit
    tls = L.open_tls(proxy.port, env.cafile, HOST, origin.port, timeout=60)
    problems = []
    try:
        err = L.send_writes(tls, writes, gap, origin.wait_quiet if settle else None)
        ans = L.read_answer(tls, err, timeout=60)
        if ans.status != 403:
            problems.append("client got %r, not 403 (%r)" % (ans.status, ans.head[:80]))
        # Part of the body went out: the block must reset the origin, not leave it waiting.
        if streamed and ans.status == 403 and not origin.wait_closed(5):
            problems.append("origin connection still open after the 403")
    finally:
        tls.close()
    if not origin.wait_closed(5):
        problems.append("origin connection still open after the client left")
    problems += leak_check(origin)
    vs = env.verdicts(origin, lambda v: v.get("path") == path)
    if not vs:
        problems.append("no verdict for %s" % path)
    sent_body = sum(r.body_len for r in origin.requests())
    for v in vs:
        # One request, one outcome: every verdict written for it must be the enforced block.
        if v.get("action") != "BLOCK" or not v.get("enforced"):
            problems.append("verdict action=%s enforced=%s reason=%s" % (v.get("action"), v.get("enforced"),
                                                                          v.get("reason")))
            continue
        n = L.out_before_block(v)
        if sent_body and n < sent_body:
            problems.append("origin got %d body bytes, verdict bytes_out_before_block=%d" % (sent_body, n))
        if not streamed and (n or origin.received()):
            problems.append("under the hold limit, yet %d bytes at the origin, bytes_out_before_block=%d"
                            % (origin.received(), n))
        if streamed and n <= 0:
            problems.append("streamed past the hold limit, yet no bytes_out_before_block in the verdict")
    for what, reason in L.untruthful_verdicts(vs, origin, leak_check):
        problems.append("verdict says BLOCK/enforced (%s) but %s" % (reason, what))
    env.settle(origin)
    return problems


def clean_upload(env, proxy, framing, body, split, ctype, gap=0.03, chunk_size=16384):
    """Sends a clean upload; returns (answer, origin, problems)."""
    origin = env.origin(proxy, None)
    path = "/clean/%d" % next(_ids)
    writes = L.upload_writes(framing, path, HOST, body, split, ctype, chunk_size)
    ans = L.exchange(proxy, env.cafile, origin, writes, gap)
    problems = []
    if ans.status != 200 or ans.body != b"origin-ok":
        problems.append("client got %r %r" % (ans.status, ans.body[:100]))
    done = [r for r in origin.completed() if r.target == path]
    if len(done) != 1:
        problems.append("origin completed %d requests for %s" % (len(done), path))
    elif done[0].body_digest() != hashlib.sha256(body).hexdigest():
        problems.append("origin body differs: %d bytes, sent %d" % (done[0].body_len, len(body)))
    env.settle(origin)
    return ans, origin, problems




# ------------------------------------------------------------------ part 1: every offset
SWEEPS = [
    # (name, value, body kind, framing)
    ("card", L.CARD_SPACED, "json", "cl"),
    ("card", L.CARD_SPACED, "json", "chunked"),
    ("card", L.CARD_SPACED, "json", "chunked-late"),
    ("card", L.CARD_SPACED, "json", "chunked-mid"),
    ("card-compact-last-bytes", L.CARD_COMPACT, "json-end", "cl"),
    ("card-compact-last-bytes", L.CARD_COMPACT, "json-end", "chunked-late"),
    ("iban-ch", L.IBAN_CH, "log", "cl"),
    ("iban-ch", L.IBAN_CH, "log", "chunked-late"),
    ("iban-de", L.IBAN_DE, "log", "chunked"),
    ("pem", None, "attachment", "cl"),
    ("pem", None, "attachment", "chunked-late"),
]


@pytest.mark.parametrize("name,value,kind,framing", SWEEPS, ids=["%s-%s" % (s[0], s[3]) for s in SWEEPS])
def test_value_at_end_split_at_every_offset_never_reaches_origin(env, pem, name, value, kind, framing):
    # Proves: past the hold limit, a value at the body's end, split across the last two writes anywhere, never leaves.
    value = pem if value is None else value
    body, off, ctype = L.body_with_value(kind, SWEEP_BODY, value, seed=len(name))
    splits = list(range(0, len(value) + 1))
    bad = sweep(splits, lambda k: blocked_upload(env, env.small, SMALL_HOLD, framing, body, value, off, off + k, ctype))
    assert not bad, summary(bad, len(splits))


def test_clean_streamed_upload_with_undecided_tail_is_forwarded_whole(env):
    # Proves (control): a clean streamed body ending in an undecided card-like number gets 200 and arrives byte-exact.
    body, off, ctype = L.body_with_value("json", SWEEP_BODY, L.NOT_A_CARD)
    cases = [(f, k) for f in ("cl", "chunked", "chunked-late", "chunked-mid") for k in (0, 7, len(L.NOT_A_CARD))]

    def one(case):
        framing, k = case
        return clean_upload(env, env.small, framing, body, off + k, ctype)[2]

    bad = sweep(cases, one)
    assert not bad, summary(bad, len(cases))


def test_bulk_csv_at_end_is_held_back(env):
    # Proves: a bulk customer CSV at the end of a streamed upload gets 403 and < threshold of its e-mails leave.
    table, emails = L.csv_table(200)
    filler = L.log_lines(SWEEP_BODY - len(table))
    body = filler + table
    off = len(filler)
    # Write boundaries: before the table, inside its header, after rows 5, 12, 24, 100, mid-row, at the end.
    splits = [off, off + 7] + [off + table.index(emails[i]) for i in (5, 12, 24, 100)] + \
             [off + table.index(emails[60]) + 9, len(body)]

    cases = [(f, split) for f in ("cl", "chunked-late") for split in splits]

    def one(case):
        framing, split = case
        return blocked_upload(env, env.small, SMALL_HOLD, framing, body, table, off, split, "text/csv",
                              leak_check=emails_leak(emails))

    bad = sweep(cases, one)
    assert not bad, summary(bad, len(cases))


def _zip_with_card_at_end():
    """A zip streamed past the hold limit: a stored member of clean log lines first, then a
    deflated member whose text carries a card, so the card exists only after inflating.
    Returns the archive and the span of the deflated member's compressed bytes."""
    import io
    import zipfile
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(zipfile.ZipInfo("logs/app.log"), L.log_lines(SWEEP_BODY), compress_type=zipfile.ZIP_STORED)
        z.writestr("export/payment.txt", b"customer 1182 paid with " + L.CARD_SPACED + b" on 2026-11-26\n",
                   compress_type=zipfile.ZIP_DEFLATED)
    data = buf.getvalue()
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        info = z.getinfo("export/payment.txt")
    # Local header: 30 fixed bytes, the name, the extra field; then the compressed data.
    name_len = int.from_bytes(data[info.header_offset + 26:info.header_offset + 28], "little")
    extra_len = int.from_bytes(data[info.header_offset + 28:info.header_offset + 30], "little")
    begin = info.header_offset + 30 + name_len + extra_len
    return data, begin, begin + info.compress_size


@pytest.mark.parametrize("framing", ["cl", "chunked-late"])
def test_card_in_deflated_zip_member_never_reaches_origin(env, framing):
    # Proves: past the hold limit, no byte of a deflated zip member carrying a card leaves, whichever write
    # boundary the client picks around and inside it (the card is only visible once the member is inflated).
    body, begin, end = _zip_with_card_at_end()
    value = body[begin:end]
    splits = sorted({begin - 31, begin - 1, begin, begin + 1, (begin + end) // 2, end - 1, end, len(body)})
    bad = sweep(splits, lambda k: blocked_upload(env, env.small, SMALL_HOLD, framing, body, value, begin, k,
                                                 "application/zip"))
    assert not bad, summary(bad, len(splits))


# ---------------------------------------------------------------- part 1: 20 MiB, 64 MiB
BIG = [
    # (name, size, value, body kind, framing, offset of the split inside the value)
    ("20MiB-cl-card-whole-in-last-write", 20 * MIB, L.CARD_SPACED, "json", "cl", 0),
    ("20MiB-chunked-card-split-terminator-later", 20 * MIB, L.CARD_SPACED, "json", "chunked-late", 7),
    ("64MiB-chunked-card-in-last-chunk-terminator-later", 64 * MIB, L.CARD_SPACED, "json", "chunked-late", 0),
    ("64MiB-cl-card-split", 64 * MIB, L.CARD_COMPACT, "json-end", "cl", 9),
    ("20MiB-chunked-iban-split", 20 * MIB, L.IBAN_CH, "log", "chunked", 13),
    ("20MiB-cl-pem-split", 20 * MIB, None, "attachment", "cl", 30),
]


@pytest.mark.parametrize("name,size,value,kind,framing,k", BIG, ids=[b[0] for b in BIG])
def test_large_upload_value_at_end_never_reaches_origin(env, pem, name, size, value, kind, framing, k):
    # Proves: 20/64 MiB uploads (default 16 MiB hold) with the value at the very end get 403; no byte of it leaves.
    value = pem if value is None else value
    body, off, ctype = L.body_with_value(kind, size, value)
    problems = blocked_upload(env, env.big, DEFAULT_HOLD, framing, body, value, off, off + k, ctype,
                              chunk_size=MIB, settle=True)
    assert not problems, "\n".join(problems)


def test_large_upload_bulk_csv_at_end_is_held_back(env):
    # Proves: a 20 MiB upload ending in a bulk customer CSV gets 403 and < threshold of its e-mails leave.
    table, emails = L.csv_table(200)
    filler = L.log_lines(20 * MIB)
    body = filler + table
    split = len(filler) + table.index(emails[40])
    problems = blocked_upload(env, env.big, DEFAULT_HOLD, "cl", body, table, len(filler), split, "text/plain",
                              leak_check=emails_leak(emails), settle=True)
    assert not problems, "\n".join(problems)


def test_large_clean_upload_is_forwarded_byte_exact(env):
    # Proves (control): a clean 20 MiB upload with an undecided tail gets 200 and arrives byte-exact, both framings.
    body, off, ctype = L.body_with_value("json", 20 * MIB, L.NOT_A_CARD)
    for framing in ("cl", "chunked-late"):
        _, _, problems = clean_upload(env, env.big, framing, body, off + 5, ctype, chunk_size=MIB)
        assert not problems, (framing, problems)


# ------------------------------------------------------ part 2: chunk extensions, trailers
EXTENSIONS = {
    "quoted": b';note="4539 1488 0343 6467 for the refund"',
    "token-dashed": b";note=4539-1488-0343-6467",
    "token-compact": b";cc=4539148803436467;x",
}
CARD_IN_EXT = {"quoted": L.CARD_SPACED, "token-dashed": L.CARD_DASHED, "token-compact": L.CARD_COMPACT}


def check_reframed_or_blocked(env, proxy, origin, ans, path, value, body):
    """A chunked upload whose framing (extension, trailer) carried a card: either 200 with
    the body re-framed by the proxy (no extension, no trailer) or 403 with nothing complete
    at the origin; the card never reaches it and the verdict says what happened."""
    problems = []
    leaked = L.leaks(origin, value)
    if leaked:
        problems.append("LEAK: %s reached the origin" % ", ".join(leaked))
    vs = env.verdicts(origin, lambda v: v.get("path") == path)
    if not vs:
        problems.append("no verdict")
    if ans.status == 200:
        done = [r for r in origin.completed() if r.target == path]
        if len(done) != 1 or bytes(done[0].body) != body:
            problems.append("origin did not get exactly the de-chunked body")
        for r in done:
            if any(b";" in line for line in r.chunk_lines):
                ext = [line for line in r.chunk_lines if b";" in line]
                problems.append("a chunk extension reached the origin: %r" % ext[:2])
            if r.trailers:
                problems.append("a trailer reached the origin: %r" % r.trailers[:80])
        for v in vs:
            if v.get("action") == "BLOCK" and v.get("enforced"):
                problems.append("verdict claims an enforced block, but the request was forwarded")
    elif ans.status == 403:
        if origin.completed():
            problems.append("403, yet the origin got a complete request")
        if not any(v.get("action") == "BLOCK" and v.get("enforced") for v in vs):
            problems.append("403 without an enforced BLOCK verdict")
    else:
        problems.append("client got %r" % ans.status)
    for what, reason in L.untruthful_verdicts(vs, origin, value):
        problems.append("verdict says BLOCK/enforced (%s) but %s" % (reason, what))
    env.settle(origin)
    return problems


@pytest.mark.parametrize("style", list(EXTENSIONS))
def test_card_in_chunk_extension_never_reaches_origin(env, style):
    # Proves: a card in a chunk extension (quoted or token) never reaches the origin, and the verdict tells the truth.
    proxy = env.small
    origin = env.origin(proxy, CARD_IN_EXT[style])
    path = "/ext/%d" % next(_ids)
    head = L.request_head("POST", path, HOST, ["Content-Type: text/plain"], chunked=True)
    writes = [head + L.chunk(b"hello", EXTENSIONS[style]) + L.TERMINATOR]
    ans = L.exchange(proxy, env.cafile, origin, writes)
    problems = check_reframed_or_blocked(env, proxy, origin, ans, path, CARD_IN_EXT[style], b"hello")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("style", list(EXTENSIONS))
def test_card_in_chunk_extension_past_hold_limit_never_reaches_origin(env, style):
    # Proves: the same for an extension on the last chunk of a streamed body, in its own write past the hold limit.
    proxy = env.small
    value = CARD_IN_EXT[style]
    origin = env.origin(proxy, value)
    path = "/ext-streamed/%d" % next(_ids)
    body = L.json_records(SWEEP_BODY) + b"{}]}\n"
    head = L.request_head("POST", path, HOST, ["Content-Type: application/json"], chunked=True)
    writes = [head + L.chunks(body[:-4096]), L.chunk(body[-4096:], EXTENSIONS[style]), L.TERMINATOR]
    ans = L.exchange(proxy, env.cafile, origin, writes)
    problems = check_reframed_or_blocked(env, proxy, origin, ans, path, value, body)
    assert not problems, "\n".join(problems)


TRAILERS = {
    "plain": (b"X-Note: 4539 1488 0343 6467\r\n", L.CARD_SPACED),
    "quoted": (b'X-Card: "4539148803436467"\r\nX-Other: fine\r\n', L.CARD_COMPACT),
}


@pytest.mark.parametrize("size", ["small", "streamed"])
@pytest.mark.parametrize("style", list(TRAILERS))
def test_card_in_trailer_never_reaches_origin(env, style, size):
    # Proves: a card in a trailer field (plain or quoted; small or streamed body) never reaches the origin.
    proxy = env.small
    trailer, value = TRAILERS[style]
    origin = env.origin(proxy, value)
    path = "/trailer/%d" % next(_ids)
    body = b"hello world\n" if size == "small" else L.log_lines(SWEEP_BODY)
    head = L.request_head("POST", path, HOST, ["Content-Type: text/plain", "Trailer: X-Note"], chunked=True)
    writes = [head + L.chunks(body), b"0\r\n" + trailer + b"\r\n"]
    ans = L.exchange(proxy, env.cafile, origin, writes)
    problems = check_reframed_or_blocked(env, proxy, origin, ans, path, value, body)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("size", ["small", "streamed"])
def test_clean_chunked_upload_with_extensions_and_trailers_is_reframed(env, size):
    # Proves (control): clean chunked with extensions and a trailer gets 200; the origin gets the exact body, re-framed.
    proxy = env.small
    origin = env.origin(proxy, None)
    path = "/reframe/%d" % next(_ids)
    body = b"first piece;second piece\n" * 4 if size == "small" else L.json_records(SWEEP_BODY) + b"{}]}\n"
    head = L.request_head("POST", path, HOST, ["Content-Type: text/plain"], chunked=True)
    exts = [b';name="quoted value; with = signs"', b";a=b;flag", b';c="x"']
    pieces = [body[i:i + 16384] for i in range(0, len(body), 16384)] if size == "streamed" else \
        [body[:10], body[10:60], body[60:]]
    framed = b"".join(L.chunk(p, exts[i % 3]) for i, p in enumerate(pieces))
    writes = [head + framed[: len(framed) // 2], framed[len(framed) // 2:],
              b"0;last=1\r\nX-Checksum: sha256-f00d\r\n\r\n"]
    ans = L.exchange(proxy, env.cafile, origin, writes)
    assert ans.status == 200 and ans.body == b"origin-ok", ans
    done = [r for r in origin.completed() if r.target == path]
    assert len(done) == 1 and bytes(done[0].body) == body, "origin did not get exactly the de-chunked body"
    assert not any(b";" in line for line in done[0].chunk_lines), done[0].chunk_lines[:4]
    assert done[0].trailers == b"" and b"X-Checksum" not in origin.raw() and b"quoted value" not in origin.raw()
    vs = env.verdicts(origin, lambda v: v.get("path") == path)
    assert vs and all(v.get("action") != "BLOCK" for v in vs), L.dump(vs)


# ------------------------------------------------------------- part 2: request heads
CARD_BODY = b'{"holder":"customer","card":"4539 1488 0343 6467"}'


def refused_without_a_byte(env, proxy, origin, ans, status, reason_prefix=None, path=None, value=L.CARD_SPACED):
    """A request the proxy must answer itself: the status, zero bytes at the origin, an
    enforced BLOCK verdict (with that reason, if given) that claims no byte went out."""
    problems = []
    origin.wait_closed(5)
    if status is not None and ans.status != status:
        problems.append("client got %r, not %d (%r)" % (ans.status, status, ans.head[:60]))
    leaked = L.leaks(origin, value)
    if leaked:
        problems.append("LEAK: %s reached the origin" % ", ".join(leaked))
    if origin.received():
        problems.append("origin received %d bytes: %r" % (origin.received(), origin.raw()[:100]))
    if origin.completed():
        problems.append("the origin parsed and answered %s %s" % (origin.completed()[0].method,
                                                                 origin.completed()[0].target))
    vs = env.verdicts(origin)  # one connection, one request: all its verdicts are in by then
    blocks = [v for v in vs if v.get("action") == "BLOCK" and v.get("enforced")
              and (path is None or v.get("path") == path)
              and (reason_prefix is None or v.get("reason", "").startswith(reason_prefix))]
    if not blocks:
        problems.append("no enforced BLOCK verdict%s: %s" % (
            " with reason %s" % reason_prefix if reason_prefix else "",
            [(v.get("action"), v.get("enforced"), v.get("reason")) for v in vs]))
    for v in blocks:
        if L.out_before_block(v):
            problems.append("verdict says %d bytes went out before the block" % L.out_before_block(v))
    for what, reason in L.untruthful_verdicts(vs, origin, value):
        problems.append("verdict says BLOCK/enforced (%s) but %s" % (reason, what))
    env.settle(origin)
    return problems


BLANKS = {
    "one-empty-line": (b"\r\n", False),
    "three-empty-lines": (b"\r\n\r\n\r\n", False),
    "empty-line-in-own-write": (b"\r\n", True),
}


@pytest.mark.parametrize("style", list(BLANKS))
def test_leading_empty_lines_are_ignored(env, style):
    # Proves: leading empty lines are ignored: a card body gets 403 with zero origin bytes, a clean one gets 200.
    blank, own_write = BLANKS[style]
    proxy = env.small

    def writes(req):
        return [blank, req] if own_write else [blank + req]

    origin = env.origin(proxy, L.CARD_SPACED)
    path = "/blank/%d" % next(_ids)
    head = L.request_head("POST", path, HOST, ["Content-Type: application/json"], content_length=len(CARD_BODY))
    ans = L.exchange(proxy, env.cafile, origin, writes(head + CARD_BODY))
    problems = refused_without_a_byte(env, proxy, origin, ans, 403, path=path)

    clean = b'{"holder":"customer","note":"nothing to see"}'
    origin2 = env.origin(proxy, None)
    path2 = "/blank-clean/%d" % next(_ids)
    head2 = L.request_head("POST", path2, HOST, ["Content-Type: application/json"], content_length=len(clean))
    ans2 = L.exchange(proxy, env.cafile, origin2, writes(head2 + clean))
    if ans2.status != 200 or ans2.body != b"origin-ok":
        problems.append("clean request: client got %r" % ans2)
    done = [r for r in origin2.completed() if r.target == path2]
    if len(done) != 1 or bytes(done[0].body) != clean or done[0].method != "POST":
        problems.append("clean request: the origin did not get it intact")
    assert not problems, "\n".join(problems)


MALFORMED = {
    "tabs": b"POST\t/hidden\tHTTP/1.1\r\n",
    "mixed-tab-space": b"POST /hidden\tHTTP/1.1\r\n",
    "mixed-space-tab": b"POST\t/hidden HTTP/1.1\r\n",
    "leading-space": b" POST /hidden HTTP/1.1\r\n",
    "leading-tab": b"\tPOST /hidden HTTP/1.1\r\n",
}


@pytest.mark.parametrize("style", list(MALFORMED))
def test_malformed_request_line_is_refused_with_400(env, style):
    # Proves: tabs or leading whitespace in the request line get 400, zero origin bytes and a malformed_http BLOCK.
    proxy = env.small
    origin = env.origin(proxy, L.CARD_SPACED)
    req = (MALFORMED[style] + b"Host: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
           % len(CARD_BODY) + CARD_BODY)
    ans = L.exchange(proxy, env.cafile, origin, [req])
    problems = refused_without_a_byte(env, proxy, origin, ans, 400, reason_prefix="malformed_http")
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------- part 2: not HTTP at all
NON_HTTP = {
    "nul-binary": b"\x00\x01binary-frame\x00\x10" + L.log_lines(2048) + b'{"card": "4539 1488 0343 6467"}\n',
    "tls-record": b"\x16\x03\x03\x00\x40" + b'{"card": "4539 1488 0343 6467", "pad": "' + b"z" * 16 + b'"}\n',
    "nul-clean": b"\x00\x00\x00\x2a" + L.log_lines(4096),
}


@pytest.mark.parametrize("style", list(NON_HTTP))
def test_non_http_stream_is_refused_in_enforce_mode(env, style):
    # Proves: without --raw-relay a bumped non-HTTP stream is refused: zero origin bytes, BLOCK unparsed_protocol.
    proxy = env.small
    origin = env.origin(proxy, L.CARD_SPACED)
    tls = L.open_tls(proxy.port, env.cafile, HOST, origin.port)
    data = NON_HTTP[style]
    L.send_writes(tls, [data[: len(data) // 2], data[len(data) // 2:]])
    # The refusal may come at once or when the stream ends; either way nothing may have gone out.
    env.verdicts(origin, timeout=2)
    L.close_tls(tls)
    tls.close()
    problems = refused_without_a_byte(env, proxy, origin, L.Answer(None, b"", b"", None), None, "unparsed_protocol")
    assert not problems, "\n".join(problems)


def raw_stream(relay_proxy, env, writes, value):
    """Sends writes as a raw (non-HTTP) stream through the relay proxy, ends the client's
    side, waits for the verdict; returns (origin, verdicts)."""
    origin = env.origin(relay_proxy, value)
    tls = L.open_tls(relay_proxy.port, env.cafile, HOST, origin.port)
    L.send_writes(tls, writes)
    L.close_tls(tls)
    vs = env.verdicts(origin)
    tls.close()
    origin.wait_closed(5)
    return origin, vs


def test_raw_relay_forwards_a_clean_stream_whole(env, relay):
    # Proves: with --raw-relay a clean non-HTTP stream reaches the origin byte-exact once the client ends its side.
    data = b"\x00\x01stream" + L.base64_attachment(300 * KIB) + b"end 4539 1488 0343 6468"
    writes = [data[:100 * KIB], data[100 * KIB:-10], data[-10:]]
    origin, vs = raw_stream(relay, env, writes, None)
    origin.wait_for(lambda: len(origin.raw()) >= len(data), 5)
    assert origin.raw() == data, "origin got %d of %d bytes" % (len(origin.raw()), len(data))
    assert vs and all(v["action"] != "BLOCK" for v in vs), L.dump(vs)


def test_raw_relay_never_forwards_a_card_at_any_offset(env, relay):
    # Proves: with --raw-relay a card at a stream's end, split at any offset, never leaves; the verdict is a BLOCK.
    value = L.CARD_SPACED
    prefix = b"\x00\x01frames\n" + L.log_lines(SWEEP_BODY)
    data = prefix + b"card " + value + b" exp 09/29\n"
    off = len(prefix) + 5

    def one(k):
        origin, vs = raw_stream(relay, env, [data[:off + k], data[off + k:]], value)
        problems = []
        leaked = L.leaks(origin, value)
        if leaked:
            problems.append("LEAK: %s" % ", ".join(leaked))
        raw = origin.raw()
        if len(raw) > off or raw != data[:len(raw)]:
            problems.append("LEAK: origin got %d bytes, the card starts at %d" % (len(raw), off))
        if not any(v["action"] == "BLOCK" and v.get("enforced") for v in vs):
            problems.append("no enforced BLOCK verdict: %s" % [(v["action"], v.get("reason")) for v in vs])
        for v in vs:
            if raw and L.out_before_block(v) < len(raw):
                problems.append("origin got %d bytes, bytes_out_before_block=%d" % (len(raw), L.out_before_block(v)))
        for what, reason in L.untruthful_verdicts(vs, origin, value):
            problems.append("verdict says BLOCK/enforced (%s) but %s" % (reason, what))
        env.settle(origin)
        return problems

    splits = list(range(0, len(value) + 1))
    bad = sweep(splits, one)
    assert not bad, summary(bad, len(splits))


# ------------------------------------------------------------------------ monitor mode
def test_monitor_mode_forwards_at_once_and_reports(env):
    # Proves: monitor mode is unchanged: the card reaches the origin at once; the verdict reports it, not enforced.
    proxy = env.monitor
    origin = env.origin(proxy, None)
    path = "/monitor/%d" % next(_ids)
    body, off, ctype = L.body_with_value("json", SWEEP_BODY, L.CARD_SPACED)
    writes = L.upload_writes("chunked-late", path, HOST, body, off + 7, ctype)
    ans = L.exchange(proxy, env.cafile, origin, writes)
    assert ans.status == 200 and ans.body == b"origin-ok", ans
    done = [r for r in origin.completed() if r.target == path]
    assert len(done) == 1 and bytes(done[0].body) == body and L.CARD_SPACED in done[0].body
    vs = env.verdicts(origin, lambda v: v.get("path") == path)
    assert vs and any(f["category"] == "credit_card" for v in vs for f in v.get("findings", [])), L.dump(vs)
    assert all(not v.get("enforced") for v in vs), L.dump(vs)


# ------------------------------------------------------------------------- cross-check
def test_zz_every_verdict_matches_what_the_origin_received(env):
    # Proves: no verdict of any case here claims an enforced BLOCK while its origin got the value or a whole request.
    if not env.cases:
        pytest.skip("no case ran in this module")
    bad = []
    for origin, case in list(env.cases.items()):
        if case["proxy"] is env.monitor:
            continue
        leaked, completed = env.facts(origin)
        for v in env.verdicts(origin, timeout=0):
            if v.get("action") == "BLOCK" and v.get("enforced") and (leaked or completed):
                bad.append((origin.port, v.get("reason"), "the value reached the origin" if leaked else
                            "the origin got a complete request"))
    assert not bad, "%d untruthful verdicts, e.g. %r" % (len(bad), bad[:8])
