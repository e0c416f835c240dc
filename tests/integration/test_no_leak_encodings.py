"""Encoded and side-channel bypasses of "nothing leaves unread" (DESIGN.md; issues 16, 17),
probed as an attacker would: the real binary in enforce mode with the shipped pack and a
64 KiB --hold-limit, the raw recording TLS origin of leak_helpers and the WebSocket origin
of ws_helpers.

Each HTTP probe puts the value at the very end of the *decoded* text of a body that is
larger than the hold limit on the wire (~300 KiB, streamed past the hold) and of a small one
(held whole), split across the client's last two writes at a few offsets: Content-Encoding
gzip (levels 6 and 1, multi-member), deflate, br, zstd; multipart (a text file part, a
base64 Content-Transfer-Encoding part); base64 inside a JSON string; JSON \\u escapes;
percent-encoded form fields; chunked + gzip with chunk boundaries at random places. The
origin must get no byte of the value: neither in its raw bytes nor in what it decodes
(what it got is decompressed / decoded and must be a prefix of the text before the value),
the client gets 403, and the verdict says BLOCK with enforced true. What cannot be read
does not leave either: a small compressed body carrying no value, its last byte corrupted or
cut in half, is blocked as `undecodable` (the shipped pack blocks it). WebSocket probes: the
card in ping, pong and close payloads, a compressed message split over three frames, and
1 MiB messages (plain and compressed) over the 64 KiB hold limit: close 1008, nothing at
the origin. The request target: a card in base64 as a path segment after others (the run
the finder meets begins at the '/'), URL-safe deep in a path, percent-encoded base64 in a
query and hex in a path: 403, no request at the origin; and base64 after a URL's path or
a name inside a JSON body. Clean controls of each shape get 200 / an echo and arrive
intact."""
import base64
import bz2
import concurrent.futures
import itertools
import io
import json
import lzma
import random
import shutil
import string
import subprocess
import tarfile
import tempfile
import threading
import time
import urllib.parse
import zlib
import gzip as gziplib

import pytest

import leak_helpers as L
from leak_helpers import summary, sweep
import ws_helpers as W
from proxy_helpers import Pki, Proxy

KIB = 1 << 10
MIB = 1 << 20
HOLD = 64 * KIB
HOST = "127.0.0.1"
CARD = L.CARD_SPACED
CARD_NEEDLES = [CARD, L.CARD_COMPACT, CARD[:9], CARD[10:]]   # whole, compact, each half
_ids = itertools.count(1)


# ----------------------------------------------------------------------------- environment
class Env:
    def __init__(self, binary):
        self.dir = tempfile.mkdtemp(prefix="egressguard-enc-")
        self.pki = Pki(self.dir)
        self.cafile = self.pki.path("cluster-ca.pem")
        self.proxy = Proxy(binary, self.pki, self.dir, "--mode", "enforce", "--hold-limit", str(HOLD),
                           "--allow", HOST, "--allow", "localhost")
        self.log = L.AuditLog(self.proxy.audit)
        self.ws_origin = W.WsOrigin(self.pki.good[1], self.pki.good[0])
        self.lock = threading.Lock()

    def origin(self):
        return L.RawOrigin(self.pki.good[1], self.pki.good[0])

    def verdicts(self, path, pred=lambda v: True, timeout=10.0):
        end = time.monotonic() + timeout
        while True:
            vs = [v for v in self.log.refresh() if v.get("path") == path and pred(v)]
            if vs or time.monotonic() > end:
                return vs
            time.sleep(0.03)

    def ws_client(self, path, **kw):
        sock = W.tls_tunnel(self.proxy.port, "localhost", self.ws_origin.port, self.cafile)
        return W.WsClient(sock, "localhost:%d" % self.ws_origin.port, path, **kw)

    def ws_raw(self, path, **kw):
        sock = W.tls_tunnel(self.proxy.port, "localhost", self.ws_origin.port, self.cafile)
        return W.RawWsClient(sock, "localhost:%d" % self.ws_origin.port, path, **kw)

    def close(self):
        self.proxy.stop()
        self.ws_origin.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def env(egressguard_bin):
    e = Env(egressguard_bin)
    yield e
    e.close()


# ----------------------------------------------------------------------------- plaintexts
def _letters(rng, n):
    return "".join(rng.choice(string.ascii_letters) for _ in range(n)).encode()


def noisy_json(n, seed=1):
    """About n bytes of JSON lines with random letter tokens (no digit runs over six):
    compresses to ~70%, so a compressed body stays well over the hold limit."""
    rng = random.Random(seed)
    out = [b'{"source":"ledger-sync","records":[\n']
    size, i = 0, 0
    while size < n:
        line = b'{"id":"evt-%06d","token":"%s","note":"%s"},\n' % (i % 1000000, _letters(rng, 60), _letters(rng, 24))
        out.append(line)
        size += len(line)
        i += 1
    return b"".join(out)


def with_card(filler, value=CARD):
    """(plaintext, offset of the value): the value at the very end."""
    pre = b'{"id":"pay-1","payment":{"holder":"customer","card":"'
    text = filler + pre + value + b'"}}]}\n'
    return text, len(filler) + len(pre)


def clean_tail(filler):
    return filler + b'{"id":"pay-1","payment":{"holder":"customer","card":"none on file"}}]}\n'


# ----------------------------------------------------------------------------- codecs
def _cli(args, data):
    return subprocess.run(args, input=data, capture_output=True, timeout=30).stdout


def compress(codec, data, level=6):
    if codec == "gzip":
        return gziplib.compress(data, compresslevel=level, mtime=0)
    if codec == "deflate":  # RFC 9110 "deflate": the zlib format
        return zlib.compress(data, level)
    if codec == "br":
        return _cli(["brotli", "-c", "-q", str(level)], data)
    if codec == "zstd":
        return _cli(["zstd", "-q", "-c", "-%d" % level], data)
    raise ValueError(codec)


def decodable_prefix(codec, data):
    """What a lenient origin can decode of the (possibly cut) compressed bytes it got."""
    if not data:
        return b""
    if codec in ("gzip", "deflate"):
        out = b""
        while data:
            d = zlib.decompressobj(31 if codec == "gzip" else 15)
            try:
                out += d.decompress(data)
            except zlib.error:
                return out
            if not d.eof or codec != "gzip":
                return out
            data = d.unused_data  # gzip members back to back
        return out
    if codec == "br":
        if have("node"):  # node's streaming decoder gives the output of a cut stream; the CLI gives none
            return _cli(["node", "-e", _NODE_BROTLI], data)
        return _cli(["brotli", "-d", "-c"], data)
    if codec == "zstd":
        return _cli(["zstd", "-d", "-q", "-c"], data)
    if codec == "deflate-raw":
        try:
            return zlib.decompressobj(-15).decompress(data)
        except zlib.error:
            return b""
    raise ValueError(codec)


_NODE_BROTLI = ("const z=require('zlib');const d=z.createBrotliDecompress({finishFlush:z.constants.BROTLI_OPERATION_FLUSH});"
                "const c=[];process.stdin.on('data',b=>c.push(b));process.stdin.on('end',()=>{"
                "d.on('data',b=>process.stdout.write(b));d.on('error',()=>{});d.end(Buffer.concat(c));});")


def have(tool):
    return shutil.which(tool) is not None


CODECS = ["gzip", "deflate"] + [c for c, t in (("br", "brotli"), ("zstd", "zstd")) if have(t)]


# ----------------------------------------------------------------------------- requests
def writes_for(path, body, split, headers, framing, rng=None):
    """Two (or three) writes meeting at body offset `split`. framing: cl | chunked (16 KiB
    chunks; the tail in one chunk with the terminator) | chunked-late (terminator later) |
    chunked-random (chunks of random sizes, boundaries anywhere; the terminator later)."""
    mv = memoryview(body)
    if framing == "cl":
        head = L.request_head("POST", path, HOST, headers, content_length=len(body))
        return [[head, mv[:split]], mv[split:]]
    head = L.request_head("POST", path, HOST, headers, chunked=True)
    if framing == "chunked-random":
        rng = rng or random.Random(split)

        def pieces(a, b):
            out, i = [], a
            while i < b:
                n = min(b - i, rng.randint(1, 9000))
                out.append(L.chunk(bytes(mv[i:i + n])))
                i += n
            return out
        return [[head] + pieces(0, split), pieces(split, len(body)) or [b""], L.TERMINATOR]
    first = [head] + L.chunk_pieces(mv[:split], 16384)
    second = L.chunk(body[split:]) if split < len(body) else b""
    if framing == "chunked":
        return [first, second + L.TERMINATOR]
    return [first, second, L.TERMINATOR] if second else [first, L.TERMINATOR]


def send(env, origin, writes, gap=0.05):
    tls = L.open_tls(env.proxy.port, env.cafile, HOST, origin.port, timeout=30)
    try:
        err = L.send_writes(tls, writes, gap)
        return L.read_answer(tls, err, timeout=30)
    finally:
        try:
            tls.close()
        except OSError:
            pass


def decoded_check(decode, plain, value_off, needles=CARD_NEEDLES):
    """Leak check on what the origin *decodes*: decode(body it got) must hold none of the
    needles and be a prefix of plain[:value_off]."""
    def check(origin):
        problems = []
        for r in origin.requests():
            got = r.body
            text = decode(got)
            for n in needles:
                if n in text:
                    problems.append("LEAK: the origin decodes %r out of the %d body bytes it got" % (n, len(got)))
                    break
            if len(text) > value_off:
                problems.append("LEAK: the origin decodes %d bytes, the value starts at %d (%r...)"
                                % (len(text), value_off, text[value_off:value_off + 24]))
            elif plain[:len(text)] != text:
                problems.append("origin decodes text that differs from what was sent (%d bytes)" % len(text))
        return problems
    return check


# ------------------------------------------------ 1b. files that are no content coding
# A card at the end of a file the client uploads as it is (no Content-Encoding): .bz2,
# .lzma, tar.bz2 and UTF-16 text. Under the hold limit and well past it, the last write
# the last k bytes; a lenient origin decodes whatever it got, and none of it may reach the
# card.
def _tar_bz2(data):
    bio = io.BytesIO()
    with tarfile.open(fileobj=bio, mode="w:bz2") as tf:
        info = tarfile.TarInfo("customers.json")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    return bio.getvalue()


def _lenient(decompressor_factory):
    def decode(data):
        try:
            return decompressor_factory().decompress(data)
        except (OSError, EOFError, lzma.LZMAError, ValueError):
            return b""
    return decode


def _untar_prefix(data):
    """The member bytes a receiver gets out of a cut tar.bz2 (the tar header is 512 bytes)."""
    return _lenient(bz2.BZ2Decompressor)(data)[512:]


FILE_FORMATS = {
    # name: (encode(plain) -> body, decode(body prefix) -> plaintext prefix, Content-Type)
    "bz2": (bz2.compress, _lenient(bz2.BZ2Decompressor), "application/x-bzip2"),
    "lzma": (lambda d: lzma.compress(d, format=lzma.FORMAT_ALONE),
             _lenient(lambda: lzma.LZMADecompressor(format=lzma.FORMAT_ALONE)), "application/octet-stream"),
    "tar-bz2": (_tar_bz2, _untar_prefix, "application/x-tar"),
    # xxd -p: lines of 60 hex digits; the receiver decodes every whole byte it got.
    "hex": (lambda d: b"".join(d.hex().encode()[i:i + 60] + b"\n" for i in range(0, 2 * len(d), 60)),
            lambda b: bytes.fromhex((lambda h: h[:len(h) - len(h) % 2])(b.decode().replace("\n", ""))),
            "text/plain"),
    "utf16le-bom": (lambda d: b"\xff\xfe" + d.decode().encode("utf-16-le"),
                    lambda b: b[2:len(b) - len(b) % 2].decode("utf-16-le", "replace").encode(), "text/plain"),
}


def file_body(fmt, size):
    encode = FILE_FORMATS[fmt][0]
    n = SMALL_PLAIN
    while True:
        filler = noisy_json(n) if size == "large" else L.json_records(n)
        plain, voff = with_card(filler)
        body = encode(plain)
        if size == "small" or len(body) > 2 * HOLD:
            return plain, voff, body
        n *= 2


@pytest.mark.parametrize("size", ["large", "small"])
@pytest.mark.parametrize("fmt", list(FILE_FORMATS))
def test_card_at_end_of_uploaded_file_format_never_reaches_origin(env, fmt, size):
    # Proves a card at the end of a .bz2/.lzma/tar.bz2/hex/UTF-16 upload (held whole / streamed past the hold) is read and blocked: the origin can decode no byte of it, whatever the last write.
    plain, voff, body = file_body(fmt, size)
    if size == "small":
        assert len(body) <= HOLD, len(body)
    _, decode, ctype = FILE_FORMATS[fmt]
    assert decode(body) == plain or fmt == "tar-bz2", "the lenient decoder must read the whole body"
    checks = [raw_check(body, len(body)), decoded_check(decode, plain, voff)]
    cases = [(f, k) for f in ("cl", "chunked-late") for k in TAIL_SPLITS if k < len(body)]
    hdrs = ["Content-Type: " + ctype]
    bad = sweep(cases, lambda c: blocked(env, body, hdrs, len(body) - c[1], c[0], checks, finding="credit_card"))
    assert not bad, summary(bad, len(cases))


def raw_check(body, value_off):
    """Leak check on the bytes: none of the needles anywhere, and each body the origin got a
    prefix of body[:value_off] (value_off: where the encoded value starts in the body)."""
    def check(origin):
        problems = []
        reqs = origin.requests()
        found = [n for n in CARD_NEEDLES if origin.raw_find(n) or any(r.body_find(n) for r in reqs)]
        if found:
            problems.append("LEAK: %r in the raw bytes the origin got" % found)
        over = L.body_overrun(origin, body, value_off)
        if over:
            problems.append("LEAK: " + over)
        return problems
    return check


def blocked(env, body, headers, split, framing, checks, rng=None, finding=None):
    """One request that must be blocked; returns the list of broken promises. finding: a
    category the verdict must name."""
    origin = env.origin()
    path = "/enc/%d" % next(_ids)
    problems = []
    try:
        ans = send(env, origin, writes_for(path, body, split, headers, framing, rng))
        if ans.status != 403:
            problems.append("client got %r, not 403 (%r)" % (ans.status, ans.head[:80]))
        if not origin.wait_closed(5):
            problems.append("origin connection still open after the client left")
        for c in checks:
            problems += c(origin)
        if origin.completed():
            problems.append("origin got a complete request (%d body bytes)" % origin.completed()[0].body_len)
        vs = env.verdicts(path)
        if not vs:
            problems.append("no verdict for %s" % path)
        sent = sum(r.body_len for r in origin.requests())
        for v in vs:
            if v.get("action") != "BLOCK" or v.get("enforced") is not True:
                problems.append("verdict action=%s enforced=%s reason=%s" % (v.get("action"), v.get("enforced"),
                                                                              v.get("reason")))
            elif sent and L.out_before_block(v) < sent:
                problems.append("origin got %d body bytes, bytes_out_before_block=%d" % (sent, L.out_before_block(v)))
            if finding and not any(f.get("category") == finding for f in v.get("findings", [])):
                problems.append("verdict without a %s finding: %s" % (finding, [f.get("category") for f in v.get("findings", [])]))
        if len(body) <= HOLD and origin.received():
            problems.append("under the hold limit, yet %d bytes reached the origin" % origin.received())
    finally:
        origin.close()
    return problems


def clean(env, body, headers, framing="cl", split=None, decode=None, plain=None):
    """A clean request of the same shape: 200, and the origin gets the body byte-exact
    (and decodable back to the plaintext)."""
    origin = env.origin()
    path = "/enc-clean/%d" % next(_ids)
    problems = []
    try:
        ans = send(env, origin, writes_for(path, body, len(body) - 7 if split is None else split, headers, framing))
        if ans.status != 200 or ans.body != b"origin-ok":
            problems.append("client got %r %r" % (ans.status, ans.body[:200]))
        done = [r for r in origin.completed() if r.target == path]
        if len(done) != 1:
            problems.append("origin completed %d requests" % len(done))
        else:
            got = done[0].body
            if got != body:
                problems.append("origin body differs: %d bytes, sent %d" % (len(got), len(body)))
            elif decode is not None and decode(got) != plain:
                problems.append("origin body does not decode back to the plaintext")
        vs = env.verdicts(path)
        if any(v.get("action") == "BLOCK" for v in vs):
            problems.append("clean request got a BLOCK verdict: %s" % [v.get("reason") for v in vs])
    finally:
        origin.close()
    return problems




def ce_headers(codec, ctype="application/json"):
    return ["Content-Type: " + ctype, "Content-Encoding: " + codec, "User-Agent: enc-probe/1"]


# ------------------------------------------------------------------ 1. Content-Encoding
LARGE_PLAIN = 420 * KIB   # compresses to ~300 KiB: over the hold limit on the wire
SMALL_PLAIN = 12 * KIB    # held whole
TAIL_SPLITS = (1, 8, 12, 24, 48, 200, 3000)   # last write = the last k compressed bytes

ENC_CASES = [(c, lvl) for c in CODECS for lvl in ((6, 1) if c == "gzip" else (6,))]


@pytest.mark.parametrize("codec,level", ENC_CASES, ids=["%s-%d" % c for c in ENC_CASES])
@pytest.mark.parametrize("size", ["large", "small"])
def test_compressed_body_card_at_end_blocked(env, codec, level, size):
    # Proves a card at the end of a gzip/deflate/br/zstd body's plaintext (past / under the hold) never decodes at the origin.
    filler = noisy_json(LARGE_PLAIN) if size == "large" else L.json_records(SMALL_PLAIN)
    plain, voff = with_card(filler)
    body = compress(codec, plain, level)
    assert (len(body) > HOLD) == (size == "large"), len(body)
    checks = [raw_check(body, len(body)), decoded_check(lambda b: decodable_prefix(codec, b), plain, voff)]
    cases = [(f, k) for f in ("cl", "chunked-late") for k in TAIL_SPLITS if k < len(body)]
    bad = sweep(cases, lambda c: blocked(env, body, ce_headers(codec), len(body) - c[1], c[0], checks))
    assert not bad, summary(bad, len(cases))


@pytest.mark.parametrize("codec", CODECS)
def test_compressed_clean_controls_pass(env, codec):
    # Proves (control) clean compressed bodies, large and small, get 200 and arrive byte-exact and decompressible.
    cases = []
    for plain in (clean_tail(noisy_json(LARGE_PLAIN)), clean_tail(L.json_records(SMALL_PLAIN))):
        body = compress(codec, plain)
        for framing in ("cl", "chunked-late"):
            cases.append((plain, body, framing))
    bad = sweep(list(range(len(cases))),
                lambda i: clean(env, cases[i][1], ce_headers(codec), cases[i][2],
                                decode=lambda b: decodable_prefix(codec, b), plain=cases[i][0]))
    assert not bad, summary(bad, len(cases))


def test_gzip_card_in_second_member_blocked(env):
    # Proves a card in a second gzip member (members back to back, RFC 1952) is decoded and blocked.
    filler = noisy_json(LARGE_PLAIN)
    plain, voff = with_card(filler)
    body = gziplib.compress(filler, 6, mtime=0) + gziplib.compress(plain[len(filler):], 6, mtime=0)
    checks = [decoded_check(lambda b: decodable_prefix("gzip", b), plain, voff)]
    cases = [("cl", k) for k in (1, 30, 60)] + [("chunked-late", 30)]
    bad = sweep(cases, lambda c: blocked(env, body, ce_headers("gzip"), len(body) - c[1], c[0], checks))
    assert not bad, summary(bad, len(cases))


def test_gzip_level1_highly_compressible_over_hold_in_plaintext_only(env):
    # Proves a small gzip body (under the hold on the wire) that inflates to ~2 MiB with a card at its end is blocked.
    plain, voff = with_card(L.json_records(2 * MIB))
    body = compress("gzip", plain, 1)
    checks = [decoded_check(lambda b: decodable_prefix("gzip", b), plain, voff)]
    cases = [("cl", k) for k in (1, 20, 500)]
    bad = sweep(cases, lambda c: blocked(env, body, ce_headers("gzip"), len(body) - c[1], c[0], checks))
    assert not bad, summary(bad, len(cases)) + " (body %d bytes)" % len(body)


def _raw_deflate(data):
    co = zlib.compressobj(6, zlib.DEFLATED, -15)
    return co.compress(data) + co.flush()


# (name, Content-Encoding header lines, encode, what the origin decodes: codecs outermost first)
CE_VARIANTS = [
    ("deflate-raw", ["Content-Encoding: deflate"], _raw_deflate, ["deflate-raw"]),
    ("x-gzip", ["Content-Encoding: x-gzip"], lambda p: compress("gzip", p), ["gzip"]),
    ("GZIP-upper", ["Content-Encoding: GZIP"], lambda p: compress("gzip", p), ["gzip"]),
    ("gzip-gzip", ["Content-Encoding: gzip, gzip"], lambda p: compress("gzip", compress("gzip", p)), ["gzip", "gzip"]),
    ("two-headers-deflate-gzip", ["Content-Encoding: deflate", "Content-Encoding: gzip"],
     lambda p: compress("gzip", compress("deflate", p)), ["gzip", "deflate"]),
    ("identity-declared-gzip-body", ["Content-Encoding: identity"], lambda p: compress("gzip", p), ["gzip"]),
    ("br-declared-gzip-body", ["Content-Encoding: br"], lambda p: compress("gzip", p), ["gzip"]),
    ("deflate-declared-gzip-body", ["Content-Encoding: deflate"], lambda p: compress("gzip", p), ["gzip"]),
    ("zstd-declared-gzip-body", ["Content-Encoding: zstd"], lambda p: compress("gzip", p), ["gzip"]),
    ("unknown-compress-declared-gzip-body", ["Content-Encoding: compress"], lambda p: compress("gzip", p), ["gzip"]),
]


@pytest.mark.parametrize("name,ce,encode,codecs", CE_VARIANTS, ids=[v[0] for v in CE_VARIANTS])
def test_content_encoding_header_variants_blocked(env, name, ce, encode, codecs):
    # Proves odd Content-Encoding spellings (raw deflate, x-gzip, upper case, double, two header lines, mislabelled) never let the card decode at the origin.
    plain, voff = with_card(noisy_json(LARGE_PLAIN, seed=9))
    body = encode(plain)

    def decode(b):
        for c in codecs:
            b = decodable_prefix(c, b)
        return b
    checks = [decoded_check(decode, plain, voff)]
    hdrs = ["Content-Type: application/json", "User-Agent: enc-probe/1"] + ce
    cases = [("cl", 8), ("cl", 40), ("chunked-late", 8)]
    bad = sweep(cases, lambda c: blocked(env, body, hdrs, len(body) - c[1], c[0], checks))
    assert not bad, summary(bad, len(cases))


def damaged(codec, body, how):
    """body with its last byte flipped (gzip ISIZE, zlib Adler-32, br padding bits, zstd
    checksum) or cut in half; checked to be unreadable by the reference decoder too."""
    bad = body[:-1] + bytes([body[-1] ^ 0xFF]) if how == "last-byte" else body[:len(body) // 2]
    if codec in ("gzip", "deflate"):
        d = zlib.decompressobj(31 if codec == "gzip" else 15)
        try:
            d.decompress(bad)
            ok = d.eof
        except zlib.error:
            ok = False
    else:
        tool = ["brotli", "-d", "-c"] if codec == "br" else ["zstd", "-d", "-q", "-c"]
        ok = subprocess.run(tool, input=bad, capture_output=True, timeout=30).returncode == 0
    assert not ok, "%s %s: the reference decoder reads it" % (codec, how)
    return bad


@pytest.mark.parametrize("how", ["last-byte", "cut"])
@pytest.mark.parametrize("codec", CODECS)
def test_unreadable_compressed_body_blocked(env, codec, how):
    # Proves what cannot be read does not leave: a small gzip/deflate/br/zstd body with no value in it, its last byte corrupted or cut in half, gets 403, nothing at the origin, a BLOCK verdict naming `undecodable` (the shipped pack blocks it).
    body = damaged(codec, compress(codec, clean_tail(L.json_records(SMALL_PLAIN))), how)
    cases = [(f, k) for f in ("cl", "chunked-late") for k in (1, 24, 3000)]
    bad = sweep(cases, lambda c: blocked(env, body, ce_headers(codec), len(body) - c[1], c[0], [],
                                         finding="undecodable"))
    assert not bad, summary(bad, len(cases))


# ------------------------------------------------------------------ 5. chunked + gzip
@pytest.mark.parametrize("level", [6, 1])
def test_chunked_gzip_random_chunk_boundaries_blocked(env, level):
    # Proves chunked + gzip with chunk boundaries at random places in the gzip stream never lets the card decode at the origin.
    plain, voff = with_card(noisy_json(LARGE_PLAIN, seed=5))
    body = compress("gzip", plain, level)
    checks = [decoded_check(lambda b: decodable_prefix("gzip", b), plain, voff)]
    cases = [(k, seed) for k in (1, 9, 25, 120, 2500) for seed in (1, 2)]
    bad = sweep(cases, lambda c: blocked(env, body, ce_headers("gzip"), len(body) - c[0], "chunked-random", checks,
                                         rng=random.Random(c[1] * 1000 + c[0])))
    assert not bad, summary(bad, len(cases))


def test_chunked_gzip_random_chunks_clean_control(env):
    # Proves (control) a clean chunked + gzip body with random chunk boundaries gets 200 and arrives intact.
    plain = clean_tail(noisy_json(LARGE_PLAIN, seed=5))
    body = compress("gzip", plain)
    problems = clean(env, body, ce_headers("gzip"), "chunked-random", split=len(body) - 100,
                     decode=lambda b: decodable_prefix("gzip", b), plain=plain)
    assert not problems, problems


# ------------------------------------------------------------------ 2. multipart
BOUNDARY = b"----probeBoundary7MA4YWxkTrZu0gW"


def multipart(parts):
    out = b""
    for hdrs, content in parts:
        out += b"--" + BOUNDARY + b"\r\n" + b"".join(h + b"\r\n" for h in hdrs) + b"\r\n" + content + b"\r\n"
    return out + b"--" + BOUNDARY + b"--\r\n"


def multipart_body(b64=False, size="large"):
    parts = [
        ([b'Content-Disposition: form-data; name="title"'], b"quarterly export"),
        ([b'Content-Disposition: form-data; name="meta"; filename="meta.json"', b"Content-Type: application/json"],
         L.json_records(2 * KIB if size == "small" else 20 * KIB, seed=3) + b"{}]}"),
    ]
    hdrs = [b'Content-Disposition: form-data; name="upload"; filename="notes.txt"', b"Content-Type: text/plain"]
    if b64:
        hdrs.append(b"Content-Transfer-Encoding: base64")
    return multipart(parts[:2] + [(hdrs, b"@@CONTENT@@")])


def mp_case(size, b64, value=CARD):
    """(body, raw value offset, decoder, plaintext of the last part, value offset in it)."""
    text = L.log_lines(300 * KIB if size == "large" else 6 * KIB) + b"2026-11-30 WARN billing: card on file "
    voff_text = len(text)
    text += (value if value is not None else b"none on file") + b"\n"
    if b64:
        enc = base64.encodebytes(text)  # MIME lines of 76
        # where the encoding of the value begins: the 4-char group holding its first byte, with line breaks
        group = voff_text // 3
        enc_off = group * 4 + group * 4 // 76
    else:
        enc, enc_off = text, voff_text
    body = multipart_body(b64, size).replace(b"@@CONTENT@@", enc)
    start = body.index(enc)
    return body, start + enc_off, start, enc, text, voff_text


@pytest.mark.parametrize("b64", [False, True], ids=["text-part", "base64-part"])
@pytest.mark.parametrize("size", ["large", "small"])
def test_multipart_card_in_file_part_blocked(env, size, b64):
    # Proves a card at the end of a multipart file part (plain text, or Content-Transfer-Encoding base64) never leaves.
    body, raw_off, start, enc, text, voff_text = mp_case(size, b64)
    assert (len(body) > HOLD) == (size == "large")

    def part_decoded(got):
        part = got[start:start + len(enc)]
        if not b64:
            return part
        part = part.replace(b"\n", b"")
        part = part[:len(part) - len(part) % 4]
        return base64.b64decode(part)
    checks = [raw_check(body, raw_off), decoded_check(part_decoded, text, voff_text)]
    ctype = "multipart/form-data; boundary=" + BOUNDARY.decode()
    hdrs = ["Content-Type: " + ctype, "User-Agent: enc-probe/1"]
    end = start + len(enc)
    splits = sorted({raw_off, raw_off + 3, raw_off + 9, end - 1, len(body) - 4})
    cases = [(f, s) for f in ("cl", "chunked-late") for s in splits]
    bad = sweep(cases, lambda c: blocked(env, body, hdrs, c[1], c[0], checks))
    assert not bad, summary(bad, len(cases))


def test_multipart_clean_controls_pass(env):
    # Proves (control) clean multipart uploads (text part, base64 part; large and small) get 200 and arrive intact.
    cases = [(s, b) for s in ("large", "small") for b in (False, True)]
    hdrs = ["Content-Type: multipart/form-data; boundary=" + BOUNDARY.decode()]
    bad = sweep(cases, lambda c: clean(env, mp_case(c[0], c[1], value=None)[0], hdrs, "cl"))
    assert not bad, summary(bad, len(cases))


# ------------------------------------------------------------------ 3. JSON encodings
def json_b64_body(size, value=CARD):
    filler = noisy_json(300 * KIB) if size == "large" else L.json_records(6 * KIB)
    secret = b"customer card number " + (value if value is not None else b"none on file") + b" exp 11/29"
    enc = base64.b64encode(secret)
    pre = b'{"id":"att-1","attachment":{"name":"note.txt","data":"'
    body = filler + pre + enc + b'"}}]}\n'
    group = secret.index(value) // 3 if value is not None else 0
    return body, len(filler) + len(pre) + group * 4, len(filler) + len(pre), enc, secret


def json_unicode_body(size, value=CARD):
    filler = noisy_json(300 * KIB) if size == "large" else L.json_records(6 * KIB)
    esc = b"".join(b"\\u%04x" % c for c in value)
    pre = b'{"id":"pay-1","payment":{"holder":"customer","card":"'
    body = filler + pre + esc + b'"}}]}\n'
    return body, len(filler) + len(pre)


@pytest.mark.parametrize("size", ["large", "small"])
def test_json_base64_string_card_blocked(env, size):
    # Proves a card base64-encoded inside a JSON string near the end of the body is decoded and blocked, no byte of it out.
    body, raw_off, start, enc, secret = json_b64_body(size)

    def decoded(got):
        part = got[start:start + len(enc)]
        return base64.b64decode(part[:len(part) - len(part) % 4])
    checks = [raw_check(body, raw_off), decoded_check(decoded, secret, secret.index(CARD))]
    hdrs = ["Content-Type: application/json"]
    splits = sorted({raw_off, raw_off + 2, raw_off + 5, raw_off + 13, start + len(enc) - 1, len(body) - 3})
    cases = [(f, s) for f in ("cl", "chunked-late") for s in splits]
    bad = sweep(cases, lambda c: blocked(env, body, hdrs, c[1], c[0], checks))
    assert not bad, summary(bad, len(cases))


def test_base64_attachment_decoding_past_64_mib_card_at_end_blocked(env):
    # Proves a base64 attachment whose decoded text passes 64 MiB (the old fixed decode limit,
    # which ended the scan there as `undecodable`) is read to its end: the card at its end is
    # found as a card, blocked, and no byte of its encoding reaches the recording origin.
    secret = L.log_lines(72 * MIB) + b"2026-11-30 WARN billing: card on file " + CARD + b"\n"
    voff = secret.index(CARD)
    enc = base64.b64encode(secret)
    pre = b'{"id":"att-9","attachment":{"name":"export.log","data":"'
    body = pre + enc + b'"}}\n'
    start = len(pre)
    raw_off = start + voff // 3 * 4

    def decoded(got):
        part = got[start:start + len(enc)]
        return base64.b64decode(part[:len(part) - len(part) % 4])
    checks = [raw_check(body, raw_off), decoded_check(decoded, secret, voff)]
    hdrs = ["Content-Type: application/json"]
    cases = [("cl", raw_off + 5), ("chunked-late", raw_off)]
    bad = sweep(cases, lambda c: blocked(env, body, hdrs, c[1], c[0], checks, finding="credit_card"))
    assert not bad, summary(bad, len(cases))


@pytest.mark.parametrize("size", ["large", "small"])
def test_json_unicode_escaped_card_blocked(env, size):
    # Proves a card written as JSON \u0034\u0035... escapes at the end of the body is decoded and blocked.
    body, off = json_unicode_body(size)
    hdrs = ["Content-Type: application/json"]

    def decoded(got):
        return json.loads(b'"' + got[off:].split(b'"')[0].rsplit(b"\\", 1)[0] + b'"').encode() \
            if b"\\" in got[off:] else b""
    checks = [raw_check(body, off), decoded_check(decoded, CARD, 0)]
    splits = sorted({off, off + 3, off + 6, off + 40, off + 6 * len(CARD) - 1, len(body) - 2})
    cases = [(f, s) for f in ("cl", "chunked-late") for s in splits]
    bad = sweep(cases, lambda c: blocked(env, body, hdrs, c[1], c[0], checks))
    assert not bad, summary(bad, len(cases))


def test_json_encoded_clean_controls_pass(env):
    # Proves (control) JSON with a base64 string and \u escapes but no card gets 200 and arrives intact.
    bodies = [json_b64_body("large", None)[0], json_b64_body("small", None)[0],
              json_unicode_body("large", b"none on file")[0], json_unicode_body("small", b"4539 1488 0343 6468")[0]]
    bad = sweep(list(range(len(bodies))), lambda i: clean(env, bodies[i], ["Content-Type: application/json"]))
    assert not bad, summary(bad, len(bodies))


# ------------------------------------------------------------------ 4. url-encoded form
def form_body(size, value=CARD):
    rng = random.Random(7)
    n = 300 * KIB if size == "large" else 6 * KIB
    fields = []
    total = 0
    i = 0
    while total < n:
        f = b"f%d=%s+%s" % (i, _letters(rng, 40), _letters(rng, 20))
        fields.append(f)
        total += len(f) + 1
        i += 1
    pre = b"&".join(fields) + b"&card="
    v = value if value is not None else b"none on file"
    enc = b"".join(b"%%%02X" % c for c in v)
    return pre + enc + b"&submit=Pay", len(pre), enc


@pytest.mark.parametrize("size", ["large", "small"])
def test_form_percent_encoded_card_blocked(env, size):
    # Proves a card with every character %XX-encoded in a form field at the end of the body is decoded and blocked.
    body, off, enc = form_body(size)
    hdrs = ["Content-Type: application/x-www-form-urlencoded"]

    def decoded(got):
        part = got[off:off + len(enc)]
        part = part[:len(part) - len(part) % 3]
        return urllib.parse.unquote_to_bytes(part)
    checks = [raw_check(body, off), decoded_check(decoded, CARD, 0)]
    splits = sorted({off, off + 2, off + 3, off + 7, off + 28, off + len(enc) - 1, len(body) - 2})
    cases = [(f, s) for f in ("cl", "chunked-late") for s in splits]
    bad = sweep(cases, lambda c: blocked(env, body, hdrs, c[1], c[0], checks))
    assert not bad, summary(bad, len(cases))


def test_form_clean_controls_pass(env):
    # Proves (control) percent-encoded forms without a card (large; small with a non-Luhn number) get 200 intact.
    bodies = [form_body("large", None)[0], form_body("small", b"4539 1488 0343 6468")[0]]
    hdrs = ["Content-Type: application/x-www-form-urlencoded"]
    bad = sweep([0, 1], lambda i: clean(env, bodies[i], hdrs, "chunked-late"))
    assert not bad, summary(bad, 2)


# ------------------------------------------------- 5. HTML references and Unicode look-alikes
# What a rich-text editor or a copy from a web page puts between the groups of a card, and
# what a person hides a card with: all of it reads as the card.
LOOKALIKES = {
    "html-nbsp": lambda v: v.replace(b" ", b"&nbsp;"),
    "html-decimal": lambda v: b"".join(b"&#%d;" % c for c in v),
    "html-hex": lambda v: b"".join(b"&#x%x;" % c for c in v),
    "utf8-nbsp": lambda v: v.replace(b" ", "\u00a0".encode()),
    "utf8-thin-space": lambda v: v.replace(b" ", "\u2009".encode()),
    "zero-width": lambda v: "\u200b".encode().join(bytes([c]) for c in v.replace(b" ", b"")),
    "fullwidth-digits": lambda v: "".join(chr(0xFF10 + c - 48) if 48 <= c <= 57 else chr(c) for c in v).encode(),
    # Markup inside the number: what a rich-text editor writes when part of it is formatted.
    "html-inline-tags": lambda v: b'<b>%s</b> <i>%s</i> <span style="color:red">%s</span> <font>%s</font>'
                                  % tuple(v.split(b" ")),
    "html-comment-split": lambda v: b"<!-- a -->".join(v.split(b" ")),
    "html-tags-and-nbsp": lambda v: b"&nbsp;".join(b"<strong>%s</strong>" % g for g in v.split(b" ")),
}


def html_body(size, encode, value=CARD):
    rng = random.Random(11)
    n = 300 * KIB if size == "large" else 6 * KIB
    paras = []
    total = 0
    while total < n:
        p = b"<p>%s&nbsp;%s &amp; caf\xc3\xa9 &#8211; %s</p>\n" % (_letters(rng, 50), _letters(rng, 12),
                                                                  _letters(rng, 30))
        paras.append(p)
        total += len(p)
    pre = b"<html><body>" + b"".join(paras) + b"<p>Karte: "
    return pre + encode(value) + b"</p></body></html>\n", len(pre)


@pytest.mark.parametrize("size", ["large", "small"])
@pytest.mark.parametrize("style", list(LOOKALIKES))
def test_card_in_html_references_or_unicode_lookalikes_blocked(env, style, size):
    # Proves a card written with &nbsp;, character references, no-break/thin spaces, zero-width characters, fullwidth digits or inline tags and comments between its groups at the end of an HTML body is read and blocked, no byte of it out.
    body, off = html_body(size, LOOKALIKES[style])
    hdrs = ["Content-Type: text/html; charset=utf-8"]
    checks = [raw_check(body, off)]
    cases = [(f, sp) for f in ("cl", "chunked-late") for sp in sorted({off, off + 3, len(body) - 2})]
    bad = sweep(cases, lambda c: blocked(env, body, hdrs, c[1], c[0], checks, finding="credit_card"))
    assert not bad, summary(bad, len(cases))


def test_html_lookalike_clean_controls_pass(env):
    # Proves (control) HTML full of &nbsp;, references and Unicode spaces around a non-Luhn number gets 200 intact.
    bodies = [html_body(size, LOOKALIKES[style], b"4539 1488 0343 6468")[0]
              for size in ("large", "small") for style in ("html-nbsp", "utf8-nbsp", "fullwidth-digits")]
    hdrs = ["Content-Type: text/html; charset=utf-8"]
    bad = sweep(list(range(len(bodies))), lambda i: clean(env, bodies[i], hdrs, "chunked-late"))
    assert not bad, summary(bad, len(bodies))


# ------------------------------------------------------------------ 6. WebSocket
def ws_path(name):
    return "/ws-enc/%s/%s" % (name, W.tag("c"))


def ws_assert_blocked(env, path, closed, needles):
    problems = []
    if not (closed.frame and closed.code == 1008):
        problems.append("client expected close 1008, got %s" % closed)
    conn = env.ws_origin.wait_conn(path)
    conn.wait_end(5)
    leaked = conn.leaks(needles)
    if leaked:
        problems.append("LEAK at the origin: %r" % leaked[:6])
    if conn.close_received and conn.close_received[0] != 1008:
        problems.append("origin got close %r" % (conn.close_received,))
    vs = env.verdicts(path, lambda v: v.get("protocol") == "websocket" and v.get("action") == "BLOCK", timeout=5)
    if not vs:
        allv = [(v.get("action"), v.get("enforced"), v.get("reason")) for v in env.log.refresh()
                if v.get("path") == path]
        problems.append("no websocket BLOCK verdict; verdicts: %r" % allv)
    elif not any(v.get("enforced") is True for v in vs):
        problems.append("BLOCK verdict not enforced: %r" % vs[0])
    return problems


@pytest.mark.parametrize("kind", ["ping", "pong", "close-reason"])
def test_ws_card_in_control_frame_blocked(env, kind):
    # Proves a card in a PING / PONG payload or a CLOSE reason never reaches the origin and the client gets 1008.
    path = ws_path(kind)
    marker = W.tag("m")
    c = env.ws_raw(path)
    c.send_frame(W.OP_TEXT, "hello before " + marker[:3])
    first = c.recv_message(5)
    assert first[0] == W.OP_TEXT, first
    payload = ("%s %s" % (marker, CARD.decode())).encode()
    if kind == "ping":
        c.send_frame(W.OP_PING, payload)
    elif kind == "pong":
        c.send_frame(W.OP_PONG, payload)
    else:
        c.send_frame(W.OP_CLOSE, W.close_payload(1000, payload.decode()))
    closed = c.wait_close(5)
    c.close()
    problems = ws_assert_blocked(env, path, closed, [marker.encode()] + CARD_NEEDLES)
    assert not problems, "\n".join(problems)


def test_ws_control_frames_clean_control(env):
    # Proves (control) clean ping / pong / close payloads pass: the ping is answered, the close completes with 1000.
    path = ws_path("ctl-clean")
    c = env.ws_raw(path)
    c.send_frame(W.OP_PING, b"keepalive ping")
    f = c.read_frame(5)
    assert f is not None and f.opcode == W.OP_PONG and f.payload == b"keepalive ping", f
    c.send_frame(W.OP_PONG, b"unsolicited pong")
    c.send_frame(W.OP_TEXT, "after pong")
    assert c.recv_message(5) == (W.OP_TEXT, b"echo:after pong")
    c.send_frame(W.OP_CLOSE, W.close_payload(1000, "bye for now"))
    closed = c.wait_close(5)
    c.close()
    assert closed.code == 1000, closed
    conn = env.ws_origin.wait_conn(path)
    conn.wait_end(5)
    assert conn.pings == [b"keepalive ping"] and conn.pongs == [b"unsolicited pong"], (conn.pings, conn.pongs)
    assert conn.close_received == (1000, "bye for now"), conn.close_received


def deflate_frames(text, pieces=3, seed=0):
    """A permessage-deflate message body (sync flush, tail removed) cut into `pieces`."""
    co = zlib.compressobj(6, zlib.DEFLATED, -15)
    data = co.compress(text) + co.flush(zlib.Z_SYNC_FLUSH)
    assert data.endswith(b"\x00\x00\xff\xff")
    data = data[:-4]
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(data)), pieces - 1))
    return [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)])]


def send_fragments(c, frags):
    for i, p in enumerate(frags):
        c.send_frame(W.OP_TEXT if i == 0 else W.OP_CONT, p, fin=i == len(frags) - 1, rsv1=i == 0)
        time.sleep(0.02)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ws_compressed_card_split_over_three_frames_blocked(env, seed):
    # Proves a compressed message whose deflate stream is split over 3 continuation frames is inflated and blocked (1008).
    path = ws_path("deflate3")
    marker = W.tag("m")
    c = env.ws_raw(path, extensions="permessage-deflate")
    assert "permessage-deflate" in (W.header(c.headers, "sec-websocket-extensions") or ""), c.headers
    text = ("%s order notes kestrel harbour granite willow; pay with card %s thanks"
            % (marker, CARD.decode())).encode()
    send_fragments(c, deflate_frames(text, 3, seed))
    closed = c.wait_close(5)
    c.close()
    problems = ws_assert_blocked(env, path, closed, [marker.encode()] + CARD_NEEDLES)
    assert not problems, "\n".join(problems)


def test_ws_compressed_three_frames_clean_control(env):
    # Proves (control) a clean compressed message split over 3 frames is relayed and echoed.
    path = ws_path("deflate3-clean")
    c = env.ws_raw(path, extensions="permessage-deflate")
    text = b"order notes kestrel harbour granite willow; pay on delivery, thanks " * 5
    send_fragments(c, deflate_frames(text, 3, 4))
    op, data = c.recv_message(5)
    c.close()
    echoed = zlib.decompressobj(-15).decompress(data + b"\x00\x00\xff\xff")
    assert echoed == b"echo:" + text, echoed[:80]
    conn = env.ws_origin.wait_conn(path)
    assert conn.messages and conn.messages[0] == (W.OP_TEXT, text)


def big_text(n, seed):
    rng = random.Random(seed)
    words = [_letters(rng, rng.randint(3, 9)).decode() for _ in range(4000)]
    out, size = [], 0
    while size < n:
        w = rng.choice(words)
        out.append(w)
        size += len(w) + 1
    return " ".join(out)


@pytest.mark.parametrize("deflate", [False, True], ids=["plain", "compressed"])
def test_ws_1mib_message_card_at_end_over_hold_blocked(env, deflate):
    # Proves a 1 MiB message (over the 64 KiB hold; plain or compressed) with the card at its end gets 1008; no byte leaves.
    path = ws_path("big-" + ("z" if deflate else "p"))
    marker = W.tag("m")
    c = env.ws_client(path, deflate=deflate)
    assert c.deflate == deflate
    text = big_text(MIB, 11) + " %s card %s" % (marker, CARD.decode())
    try:
        c.send_text(text)
    except OSError:
        pass
    closed = c.closed or c.wait_close(10)
    problems = ws_assert_blocked(env, path, closed, [marker.encode()] + CARD_NEEDLES)
    conn = env.ws_origin.wait_conn(path)
    if conn.messages:
        problems.append("the origin got the blocked message whole")
    if deflate:
        # what the origin can inflate of the frames it got, the last one possibly unfinished
        data = b"".join(f.payload for f in conn.frames() if f.opcode in (W.OP_TEXT, W.OP_CONT))
        text_got = zlib.decompressobj(-15).decompress(data) if data else b""
        if not text.encode().startswith(text_got) or any(n in text_got for n in CARD_NEEDLES + [marker.encode()]):
            problems.append("LEAK: the origin inflates %d bytes of the message, incl. the card" % len(text_got))
    try:
        c.sock.close()
    except OSError:
        pass
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("deflate", [False, True], ids=["plain", "compressed"])
def test_ws_1mib_clean_message_over_hold_relayed(env, deflate):
    # Proves (control) a clean 1 MiB message (plain or compressed) over the hold limit is relayed and echoed intact.
    path = ws_path("big-clean")
    c = env.ws_client(path, deflate=deflate)
    text = big_text(MIB, 12)
    c.send_text(text)
    assert c.recv_text(30) == "echo:" + text
    c.close()
    conn = env.ws_origin.wait_conn(path)
    assert conn.messages == [(W.OP_TEXT, text.encode())]


# ----------------------------------------------------------------- 6. values in the request target
def _target_cases():
    card = b"card " + CARD + b" exp 12/29"
    b64 = base64.b64encode(card).rstrip(b"=")
    url64 = base64.urlsafe_b64encode(card).rstrip(b"=")
    return {
        # a path segment in base64 after other segments: the run the finder sees starts at '/'
        "path-base64": b"/d/" + b64,
        "deep-path-urlsafe": b"/api/v1/upload/" + url64 + b"/done",
        "query-percent-base64": b"/q?data=" + urllib.parse.quote(base64.b64encode(card + b"??")).encode(),
        "path-hex": b"/x/" + card.hex().encode(),
    }


@pytest.mark.parametrize("name", list(_target_cases()))
def test_value_encoded_in_request_target_blocked(env, name):
    # Proves a card base64- or hex-encoded in the URL path or query is decoded and the request refused: 403, the origin gets no request.
    target = _target_cases()[name]
    origin = env.origin()
    try:
        ans = send(env, origin, [b"GET " + target + b" HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\n\r\n"])
        assert ans.status == 403, ans
        assert not origin.completed() and not origin.raw_find(target[-12:]), "the origin got the request"
    finally:
        origin.close()


def test_encoded_request_target_clean_control(env):
    # Proves (control) a path of base64 and hex ids that decode to no value gets 200.
    origin = env.origin()
    target = b"/files/" + base64.urlsafe_b64encode(b"quarterly report v2 final").rstrip(b"=") + b"/" + b"ab" * 20
    try:
        ans = send(env, origin, [b"GET " + target + b" HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\n\r\n"])
        assert ans.status == 200, ans
        assert [r.target for r in origin.completed()] == [target.decode()], origin.completed()
    finally:
        origin.close()


def test_base64_after_a_path_in_a_json_body_blocked(env):
    # Proves a card in base64 after a URL's path (the run the finder meets begins at "com/d/") or a name ("user_") inside a JSON body is read and blocked, no byte of it out.
    card = b"card " + CARD + b" exp 12/29"
    url64 = base64.urlsafe_b64encode(card).rstrip(b"=")
    hdrs = ["Content-Type: application/json"]
    for value in (b"https://hooks.example.com/d/" + url64, b"user_" + url64):
        body = b'{"note":"see","callback":"' + value + b'"}'
        off = body.index(url64)
        cases = [(f, sp) for f in ("cl", "chunked-late") for sp in (off, off + 5, len(body) - 2)]
        bad = sweep(cases, lambda c: blocked(env, body, hdrs, c[1], c[0], [raw_check(body, off)], finding="credit_card"))
        assert not bad, summary(bad, len(cases))
