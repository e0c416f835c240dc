"""Uploads as people really send them (issue 18): archives and office documents made by
the real writers (zipfile, tarfile, tar --zstd, zip -P, openpyxl, python-docx, odfpy,
reportlab; see doc_helpers.py), each carrying a 200-row customer table (name, e-mail,
valid card) and five IBANs; and the table as UTF-16 text (str.encode: a CSV with a
byte-order mark, a BOM-less big-endian TSV, the CSV in a zip).

- `egressguard scan --format jsonl` finds in each one the cards (count 200), e-mail
  addresses (200), IBANs (5) and bulk_pii, each finding naming the member it is in
  (`member`: "customers.csv", "inner.zip!customers.csv", "word/document.xml", ...) while
  `path` stays the file; the text format prints FILE!MEMBER:START-END.
- Through the proxy in enforce mode (default hold limit: every document is held whole), to
  a raw TLS origin on loopback that records every byte, as a raw body, a multipart file
  upload (curl -F) and base64 inside JSON: each is answered 403 and the origin gets no
  byte; the verdict is an enforced BLOCK for what the document carries.
- What cannot be read does not leave: a zip bomb, a zip nested past the decode depth
  limit and a truncated zip are `undecodable` (BLOCK in the shipped pack).
- What is encrypted is reported, not blocked: an encrypted zip member (zip -P) and a
  password-protected PDF give `encrypted_content` (ALERT): the upload reaches the origin
  intact and the verdict records the finding.
- Hard negatives stay clean: an xlsx of product prices and order ids, a PDF of prose with
  long reference numbers, a docx of meeting notes, a zip of source code and meeting notes
  in UTF-16 scan with exit 0 and upload with 200, byte-exact."""
import base64
import concurrent.futures
import io
import itertools
import json
import os
import shutil
import struct
import subprocess
import tempfile
import zipfile

import pytest

import doc_helpers as D
import leak_helpers as L
from proxy_helpers import Pki, Proxy

HOST = "127.0.0.1"
_ids = itertools.count(1)


def _endswith(suffix):
    return (lambda m: m.endswith(suffix)), "ends with %r" % suffix


def _xlsx_part(m):
    return m.endswith("xl/sharedStrings.xml") or "xl/worksheets/" in m


# Case -> (predicate on a finding's `member`, what it says). PDF is no container: its
# findings' member is not asserted.
CUSTOMER_DOCS = {
    "zip": _endswith("customers.csv"),
    "zip-stored": _endswith("customers.csv"),
    "zip-data-descriptor": _endswith("customers.csv"),
    "zip64": _endswith("customers.csv"),
    # Nesting is spelled with '!': the outer archive's member, then the inner one's.
    "zip-nested": ((lambda m: m.endswith("inner.zip!customers.csv")), "ends with 'inner.zip!customers.csv'"),
    "tar": _endswith("customers.csv"),
    "tar.gz": _endswith("customers.csv"),
    "tar.xz": _endswith("customers.csv"),
    "tar.zst": _endswith("customers.csv"),
    "tar.bz2": _endswith("customers.csv"),
    "zip-bzip2": _endswith("customers.csv"),
    "zip-lzma": _endswith("customers.csv"),
    # A compressed file is no container: nothing to name.
    "csv.bz2": None,
    "csv.lzma": None,
    # openpyxl writes inline strings (the sheet holds the text); Excel writes sharedStrings.
    "xlsx": (_xlsx_part, "is xl/sharedStrings.xml or a sheet"),
    # A legacy .xls whose strings are UTF-16LE (CfbScan reads them): no container.
    "xls-utf16": None,
    "docx": _endswith("word/document.xml"),
    "odt": _endswith("content.xml"),
    "ods": _endswith("content.xml"),
    "pdf": None,
    # Internet messages: a CSV attachment (base64) and the table as a quoted-printable
    # body whose soft line breaks split values. Parts are no container members.
    "eml-attachment": None,
    "eml-quoted-printable": None,
    # UTF-16 text (a CSV with a byte-order mark, a BOM-less big-endian TSV) is read
    # transcoded; inside a zip its findings name the member.
    "utf16-csv": None,
    "utf16be-tsv": None,
    "zip-utf16": _endswith("customers-utf16.txt"),
}
# 7z: a format no decoder here reads (p7zip writes it; scripts/install-deps.sh installs it).
UNREADABLE = ["zip-bomb", "zip-deep", "zip-truncated", "7z"]
ENCRYPTED = ["zip-encrypted", "pdf-encrypted"]
CLEAN = ["clean-xlsx", "clean-pdf", "clean-docx", "clean-zip", "clean-utf16"]
SHAPES = ["raw", "multipart", "json-base64"]


# --------------------------------------------------------------------------- documents
@pytest.fixture(scope="module")
def docs():
    if not D.have("zip"):
        pytest.fail("the `zip` command is missing (scripts/install-deps.sh installs it): it writes the encrypted zip")
    if not D.have("7z"):
        pytest.fail("the `7z` command is missing (scripts/install-deps.sh installs p7zip-full): it writes the 7z case")
    d = tempfile.mkdtemp(prefix="egressguard-docs-")
    yield D.build_corpus(d)
    shutil.rmtree(d, ignore_errors=True)


# --------------------------------------------------------------------------- scan
class ScanResult:
    def __init__(self, rc, stdout, stderr):
        self.rc, self.stdout, self.stderr = rc, stdout, stderr
        self.findings = [json.loads(line) for line in stdout.splitlines() if line.strip()]


def scan_jsonl(binary, paths, timeout=60):
    try:
        r = subprocess.run([binary, "scan", "--format", "jsonl", *paths], capture_output=True, text=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        return ScanResult(-1, "", "scan did not finish in %d s" % timeout)
    return ScanResult(r.returncode, r.stdout, r.stderr)


@pytest.fixture(scope="module")
def scanned(egressguard_bin, docs):
    """{case: ScanResult}: one scan of every sensitive and odd document (an engine compile
    per process is most of a scan's time); if that run fails as a whole (a crash, exit
    2), each file is scanned on its own so the failure is pinned on its document."""
    cases = [c for c in docs if c not in CLEAN]
    paths = [docs[c].path for c in cases]
    batch = scan_jsonl(egressguard_bin, paths)
    if batch.rc in (0, 1):
        return {c: ScanResult(batch.rc, "\n".join(json.dumps(f) for f in batch.findings if f["path"] == docs[c].path),
                              batch.stderr) for c in cases}
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        return dict(zip(cases, pool.map(lambda p: scan_jsonl(egressguard_bin, [p], timeout=20), paths)))


def by_category(findings):
    out = {}
    for f in findings:
        out.setdefault(f["category"], []).append(f)
    return out


def brief(findings):
    """One line per finding: what a failure message needs."""
    return "".join("\n    %s x%s %s member=%r %s-%s %r" % (f.get("category"), f.get("count"), f.get("action"),
                                                             f.get("member"), f.get("start"), f.get("end"),
                                                             f.get("evidence")) for f in findings) or " none"


def check_scan_ok(res):
    assert res.rc in (0, 1), "scan failed (exit %d): %s" % (res.rc, res.stderr[-2000:])


@pytest.mark.parametrize("case", list(CUSTOMER_DOCS))
def test_scan_finds_the_customer_table_and_names_the_member(docs, scanned, case):
    # Proves: each document's cards (200), e-mails (200), IBANs (5) and bulk_pii are found, in the member that holds them.
    res = scanned[case]
    check_scan_ok(res)
    doc = docs[case]
    cats = by_category(res.findings)
    problems = []
    # The .xls is read by its UTF-16 runs, not by its records: a string that BIFF splits
    # over a CONTINUE record (the shared strings go on every 8,224 bytes) is two runs, and
    # a value in it can be lost (one card of 200 here). Allowed: two per kind.
    slack = 2 if case == "xls-utf16" else 0
    for cat, want in (("credit_card", D.ROWS), ("email", D.ROWS), ("iban", len(D.IBANS))):
        got = sum(int(f["count"]) for f in cats.get(cat, []))
        if not want - min(slack, want // 50) <= got <= want:
            problems.append("%s: count %d, want %d" % (cat, got, want))
    if not cats.get("bulk_pii"):
        problems.append("no bulk_pii finding")
    for cat in ("credit_card", "iban", "bulk_pii"):
        if any(f["action"] != "block" for f in cats.get(cat, [])):
            problems.append("%s not action block" % cat)
    for cat in ("undecodable", "encrypted_content"):
        if cat in cats:
            problems.append("a readable document reported %s: %s" % (cat, [f["evidence"] for f in cats[cat]]))
    if any(f["path"] != doc.path for f in res.findings):
        problems.append("a finding's path is not the file's path")
    member = CUSTOMER_DOCS[case]
    if member is not None:
        pred, says = member
        for cat in ("credit_card", "email", "iban"):
            for f in cats.get(cat, []):
                if not pred(f.get("member") or ""):
                    problems.append("%s finding's member %r: want one that %s" % (cat, f.get("member"), says))
    assert not problems, "%s (%s):\n  %s\nfindings: %s" % (case, doc.filename, "\n  ".join(problems),
                                                          brief(res.findings))


def member_data_span(zip_bytes, name):
    """(first, end) offsets of the member's stored (compressed) data in the zip."""
    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as zf:
        info = zf.getinfo(name)
    off = info.header_offset
    assert zip_bytes[off:off + 4] == b"PK\x03\x04"
    name_len, extra_len = struct.unpack("<HH", zip_bytes[off + 26:off + 30])
    first = off + 30 + name_len + extra_len
    return first, first + info.compress_size


def test_scan_text_format_prints_file_bang_member(egressguard_bin, docs):
    # Proves: the text format names the member after the file (FILE!customers.csv:START-END: credit_card ...), and
    # START-END is a non-empty span inside the bytes that carry the member (for a nested member: the outer member's).
    zip_doc, nested = docs["zip"], docs["zip-nested"]
    r = subprocess.run([egressguard_bin, "scan", zip_doc.path, nested.path], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 1, r.stderr
    lines = r.stdout.splitlines()
    want = [(zip_doc.path + "!customers.csv:", member_data_span(zip_doc.data, "customers.csv")),
            (nested.path + "!inner.zip!customers.csv:", member_data_span(nested.data, "inner.zip"))]
    problems = []
    for prefix, (first, last) in want:
        cards = [ln for ln in lines if ln.startswith(prefix) and " credit_card " in ln]
        if not cards:
            problems.append("no credit_card line starting with %r" % prefix)
            continue
        start, end = map(int, cards[0][len(prefix):].split(":", 1)[0].split("-"))
        if not first <= start < end <= last:
            problems.append("%r: span %d-%d, the member's data is %d-%d" % (cards[0], start, end, first, last))
    assert not problems, "\n".join(problems) + "\nscan output:\n" + r.stdout[-3000:]


def test_scan_card_split_across_word_runs(docs, scanned):
    # Proves: a card and an IBAN typed into a docx paragraph and split into bold / plain runs are each found once.
    res = scanned["docx-split-runs"]
    check_scan_ok(res)
    cats = by_category(res.findings)
    got = {c: sum(int(f["count"]) for f in cats.get(c, [])) for c in ("credit_card", "iban")}
    assert got == {"credit_card": 1, "iban": 1}, brief(res.findings)
    members = {f.get("member") for c in ("credit_card", "iban") for f in cats.get(c, [])}
    assert all((m or "").endswith("word/document.xml") for m in members), brief(res.findings)


@pytest.mark.parametrize("case", UNREADABLE)
def test_scan_unreadable_archive_is_undecodable(docs, scanned, case):
    # Proves: a zip bomb, a zip nested past the depth limit and a truncated zip are reported `undecodable`, action block.
    res = scanned[case]
    check_scan_ok(res)
    und = by_category(res.findings).get("undecodable", [])
    assert und, "%s (%s): no undecodable finding: %s" % (case, docs[case].filename, brief(res.findings))
    assert all(f["action"] == "block" for f in und), brief(und)
    assert res.rc == 1


@pytest.mark.parametrize("case", ENCRYPTED)
def test_scan_encrypted_content_is_reported_as_alert(docs, scanned, case):
    # Proves: an encrypted zip member / password-protected PDF gives `encrypted_content` (alert), not `undecodable`.
    res = scanned[case]
    check_scan_ok(res)
    cats = by_category(res.findings)
    enc = cats.get("encrypted_content", [])
    assert enc, "%s: no encrypted_content finding: %s" % (case, brief(res.findings))
    assert all(f["action"] == "alert" for f in enc), brief(enc)
    assert "undecodable" not in cats, "encrypted content reported undecodable (which blocks): %s" % brief(res.findings)
    assert not any(f["action"] == "block" for f in res.findings), brief(res.findings)
    if case == "zip-encrypted":
        assert all((f.get("member") or "").endswith("customers.csv") for f in enc), brief(enc)


def test_scan_hard_negatives_are_clean(egressguard_bin, docs):
    # Proves: prices/order ids xlsx, prose PDF with long reference numbers, meeting-notes docx, source zip: exit 0, no output.
    res = scan_jsonl(egressguard_bin, [docs[c].path for c in CLEAN])
    assert res.rc == 0 and not res.findings, "exit %d: %s %s" % (res.rc, brief(res.findings), res.stderr[-1000:])


# --------------------------------------------------------------------------- proxy
class Env:
    def __init__(self, binary):
        self.dir = tempfile.mkdtemp(prefix="egressguard-containers-")
        self.pki = Pki(self.dir)
        self.cafile = self.pki.path("cluster-ca.pem")
        self.proxy = Proxy(binary, self.pki, self.dir, "--mode", "enforce", "--allow", HOST, "--allow", "localhost")
        self.log = L.AuditLog(self.proxy.audit)

    def close(self):
        self.proxy.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def env(egressguard_bin):
    e = Env(egressguard_bin)
    yield e
    e.close()


class Upload:
    def __init__(self, status, curl_err, origin, path, sent, verdicts):
        self.status, self.curl_err, self.origin, self.path = status, curl_err, origin, path
        self.sent = sent          # the file's bytes as they must appear in the request body
        self.verdicts = verdicts

    def bodies(self):
        return [r for r in self.origin.requests() if r.target == self.path]

    def facts(self):
        o = self.origin
        return "client got %r %s; origin: %d bytes, %d complete requests; verdicts:%s" % (
            self.status, self.curl_err.strip()[-200:], o.received(), len(o.completed()),
            "".join("\n    %s enforced=%s reason=%r out_before_block=%s findings=%s" % (
                v.get("action"), v.get("enforced"), v.get("reason"), v.get("bytes_out_before_block"),
                [(f.get("category"), f.get("count")) for f in v.get("findings", [])]) for v in self.verdicts) or " none")


def upload(env, doc, shape):
    """POSTs the document through the proxy with curl, as `shape`, to a fresh recording
    origin; returns the Upload once its verdict is written."""
    origin = L.RawOrigin(env.pki.good[1], env.pki.good[0])
    mark = env.log.count()
    path = "/upload/%d" % next(_ids)
    args = []
    sent = doc.data
    if shape == "raw":
        args = ["--data-binary", "@" + doc.path, "-H", "Content-Type: " + doc.mime]
    elif shape == "multipart":
        args = ["-F", "note=quarterly export", "-F", "file=@%s;type=%s;filename=%s" % (doc.path, doc.mime, doc.filename)]
    elif shape == "json-base64":
        payload = json.dumps({"filename": doc.filename, "content_type": doc.mime,
                              "attachment": base64.b64encode(doc.data).decode()}).encode()
        pfile = os.path.join(env.dir, "payload-%s.json" % path.rsplit("/", 1)[1])
        with open(pfile, "wb") as f:
            f.write(payload)
        args = ["--data-binary", "@" + pfile, "-H", "Content-Type: application/json"]
        sent = payload
    else:
        raise ValueError(shape)
    url = "https://%s:%d%s" % (HOST, origin.port, path)
    r = subprocess.run(["curl", "-sS", "-m", "60", "--proxy", "http://127.0.0.1:%d" % env.proxy.port, "--cacert",
                        env.cafile, "-o", "/dev/null", "-w", "%{http_code}", *args, url],
                       capture_output=True, text=True, timeout=90)
    status = int(r.stdout.strip() or 0)
    vs = env.log.wait(origin.port, mark, lambda v: v.get("path") == path, timeout=10)
    origin.wait_closed(5)
    return Upload(status, r.stderr, origin, path, sent, vs)


def categories(vs):
    return {f.get("category") for v in vs for f in v.get("findings", [])}


def blocked_problems(up, want_categories):
    """The promises of a block: 403, not a byte at the origin, an enforced BLOCK verdict
    that says no byte went out and names what it blocked for."""
    problems = []
    if up.status != 403:
        problems.append("client got %r, not 403" % up.status)
    if up.origin.received():
        problems.append("LEAK: the origin received %d bytes (%d of them body bytes)"
                        % (up.origin.received(), sum(r.body_len for r in up.origin.requests())))
    if up.origin.completed():
        problems.append("the origin got a complete request")
    if not up.verdicts:
        problems.append("no verdict for %s" % up.path)
    for v in up.verdicts:
        if v.get("action") != "BLOCK" or v.get("enforced") is not True:
            problems.append("verdict action=%s enforced=%s reason=%s" % (v.get("action"), v.get("enforced"),
                                                                          v.get("reason")))
        if L.out_before_block(v):
            problems.append("verdict bytes_out_before_block=%d" % L.out_before_block(v))
    missing = set(want_categories) - categories(up.verdicts)
    if up.verdicts and missing:
        problems.append("verdict findings lack %s (has %s)" % (sorted(missing), sorted(categories(up.verdicts))))
    return problems


def passed_problems(up, shape):
    """The promises of an allowed upload: 200, and the origin got the file intact."""
    problems = []
    if up.status != 200:
        problems.append("client got %r, not 200" % up.status)
    done = [r for r in up.bodies() if r.complete]
    if len(done) != 1:
        problems.append("origin completed %d requests for %s" % (len(done), up.path))
    else:
        body = done[0].body
        if shape == "multipart":
            if up.sent not in body:
                problems.append("the multipart body at the origin lacks the file's bytes")
        elif body != up.sent:
            problems.append("origin body differs: %d bytes, sent %d" % (len(body), len(up.sent)))
    if not up.verdicts:
        problems.append("no verdict for %s" % up.path)
    for v in up.verdicts:
        if v.get("action") == "BLOCK":
            problems.append("verdict BLOCK, reason=%s, findings %s" % (v.get("reason"), sorted(categories([v]))))
    return problems


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("case", list(CUSTOMER_DOCS) + ["docx-split-runs"])
def test_upload_of_customer_document_is_blocked_without_a_byte(env, docs, case, shape):
    # Proves: each document with the customer table, sent raw / multipart / base64-in-JSON, gets 403 and 0 origin bytes.
    up = upload(env, docs[case], shape)
    problems = blocked_problems(up, ["credit_card"])
    up.origin.close()
    assert not problems, "%s as %s:\n  %s\n%s" % (case, shape, "\n  ".join(problems), up.facts())


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("case", UNREADABLE)
def test_upload_of_unreadable_archive_is_blocked_without_a_byte(env, docs, case, shape):
    # Proves: a zip bomb, an over-deep zip and a truncated zip, in each shape, get 403, 0 origin bytes, `undecodable`.
    up = upload(env, docs[case], shape)
    problems = blocked_problems(up, ["undecodable"])
    up.origin.close()
    assert not problems, "%s as %s:\n  %s\n%s" % (case, shape, "\n  ".join(problems), up.facts())


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("case", ENCRYPTED)
def test_upload_of_encrypted_content_passes_with_the_finding_recorded(env, docs, case, shape):
    # Proves: an encrypted zip / protected PDF is not blocked (alert): 200, intact at the origin, verdict has encrypted_content.
    up = upload(env, docs[case], shape)
    problems = passed_problems(up, shape)
    if up.verdicts and "encrypted_content" not in categories(up.verdicts):
        problems.append("verdict findings lack encrypted_content (has %s)" % sorted(categories(up.verdicts)))
    if up.verdicts and not any(v.get("action") == "ALERT" for v in up.verdicts):
        problems.append("no ALERT verdict: %s" % [v.get("action") for v in up.verdicts])
    up.origin.close()
    assert not problems, "%s as %s:\n  %s\n%s" % (case, shape, "\n  ".join(problems), up.facts())


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("case", CLEAN)
def test_upload_of_hard_negative_passes_intact(env, docs, case, shape):
    # Proves: the hard negatives, in each shape, get 200 and reach the origin byte-exact, with no BLOCK verdict.
    up = upload(env, docs[case], shape)
    problems = passed_problems(up, shape)
    up.origin.close()
    assert not problems, "%s as %s:\n  %s\n%s" % (case, shape, "\n  ".join(problems), up.facts())
