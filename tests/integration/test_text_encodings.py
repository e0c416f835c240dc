"""Text in UTF-16 (dlp/decode/utf16.cc), HTML and hex (dlp/decode/hex_runs.h): "nothing
leaves unread" (DESIGN.md) for the
encoding Excel's "Unicode Text" export and Windows PowerShell's Out-File write, where every
ASCII character is followed (little-endian) or preceded (big-endian) by a NUL byte, so no
pattern matches the raw bytes.

- `egressguard scan` of the 200-row customer table (doc_helpers) encoded by Python as
  UTF-16 with a byte-order mark, UTF-16LE and UTF-16BE without one, as CSV and as
  tab-separated text: exit 1, credit_card x200 and e-mail x200, bulk_pii counting the
  CSV's 200 rows by its header, as the UTF-8 CSV does; the first card's offsets are those
  of its code units in the file; inside a zip the finding names the member and lies in
  its data.
- A table whose PII columns validate as nothing (names, birth dates, addresses) counts
  by its header in UTF-16 and gzipped as in UTF-8 (the engine reads every decoded
  document's header, not only archive members').
- Hard negatives stay clean (exit 0, nothing printed): a PNG, random bytes, UTF-8 prose
  with accents, UTF-16 meeting notes.
- HTML (dlp/decode/html_text.cc): the customer table as an HTML table gives the counts
  of its CSV twin; a table of people whose columns validate as nothing counts by its
  header row; a card split by inline markup (<b>, <span style>, comments) is found;
  a product price list and an article with long reference numbers stay clean.
- Hex (what `xxd -p`, Python's bytes.hex() and JSON APIs write): the table in hex, in
  xxd's 60-digit lines, upper-case inside JSON, and a zip of it in hex read like the
  UTF-8 CSV; hashes, trace ids and UUIDs in hex stay clean.
The proxy side (enforce mode, 403, no byte at the origin, raw / multipart / base64 in
JSON) is test_containers.py's cases utf16-csv, utf16be-tsv and zip-utf16, and
test_no_leak_encodings.py's file formats (hex among them)."""
import gzip
import io
import json
import os
import random
import struct
import subprocess
import tempfile
import zipfile
import zlib

import pytest

import doc_helpers as D


def scan(binary, path, *args):
    return subprocess.run([binary, "scan", *args, path], capture_output=True, text=True, timeout=60)


def jsonl(binary, path):
    r = scan(binary, path, "--format", "jsonl")
    assert r.returncode in (0, 1), r.stderr[-2000:]
    return r.returncode, [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


def by_category(findings):
    out = {}
    for f in findings:
        out.setdefault(f["category"], []).append(f)
    return out


@pytest.fixture(scope="module")
def tmp():
    with tempfile.TemporaryDirectory(prefix="egressguard-utf16-") as d:
        yield d


def write(tmp, name, data):
    path = os.path.join(tmp, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


CSV = D.customer_csv().decode()
TSV = D.customer_text()
# (file name, text, codec, bytes before the first code unit)
TABLES = {
    "csv-utf16": ("customers.txt", CSV, "utf-16", 2),       # Python's utf-16: LE with FF FE
    "csv-utf16le": ("customers-le.csv", CSV, "utf-16-le", 0),
    "csv-utf16be": ("customers-be.csv", CSV, "utf-16-be", 0),
    "tsv-utf16": ("export.txt", TSV, "utf-16", 2),           # Excel's Unicode Text
    "tsv-utf16be": ("export-be.txt", TSV, "utf-16-be", 0),
}


@pytest.mark.parametrize("case", list(TABLES))
def test_utf16_table_is_read_like_its_utf8_twin(egressguard_bin, tmp, case):
    # Proves: the 200-row table in UTF-16 gives credit_card x200, email x200 and bulk_pii over its CSV rows, as UTF-8 does.
    name, text, codec, lead = TABLES[case]
    path = write(tmp, name, text.encode(codec))
    rc, findings = jsonl(egressguard_bin, path)
    utf8_rc, utf8 = jsonl(egressguard_bin, write(tmp, name + ".utf8", text.encode()))
    cats, want = by_category(findings), by_category(utf8)
    assert rc == 1 == utf8_rc, findings
    for cat in ("credit_card", "email", "iban"):
        got = sum(int(f["count"]) for f in cats.get(cat, []))
        assert got == sum(int(f["count"]) for f in want.get(cat, [])), (cat, findings)
    assert sum(int(f["count"]) for f in cats["credit_card"]) == D.ROWS
    bulk = cats.get("bulk_pii", [])
    assert bulk and bulk[0]["evidence"] == want["bulk_pii"][0]["evidence"], (bulk, want.get("bulk_pii"))
    assert bulk[0]["evidence"].startswith("CSV with %d records" % D.ROWS), bulk
    assert "undecodable" not in cats, findings
    # The first card's offsets are its code units': 2 bytes a character, after the mark.
    first = D.customers()[0][2]
    k = text.index(first)
    card = cats["credit_card"][0]
    assert (card["start"], card["end"]) == (lead + 2 * k, lead + 2 * (k + len(first))), card


def test_utf16_member_of_a_zip_is_named_with_offsets_in_its_data(egressguard_bin, tmp):
    # Proves: `scan` prints FILE!customers-utf16.txt:START-END for a UTF-16 CSV in a zip, inside the member's stored data.
    data = D.zip_bytes([("README.txt", b"see the export\n"),
                        ("customers-utf16.txt", CSV.encode("utf-16"))], zipfile.ZIP_STORED)
    path = write(tmp, "export.zip", data)
    r = scan(egressguard_bin, path)
    assert r.returncode == 1, r.stdout + r.stderr
    prefix = path + "!customers-utf16.txt:"
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith(prefix) and " credit_card " in ln]
    assert lines, r.stdout
    start, end = map(int, lines[0][len(prefix):].split(":", 1)[0].split("-"))
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        info = zf.getinfo("customers-utf16.txt")
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26:info.header_offset + 30])
    first = info.header_offset + 30 + name_len + extra_len
    card = D.customers()[0][2]
    k = CSV.index(card)
    assert (start, end) == (first + 2 + 2 * k, first + 2 + 2 * (k + len(card))), lines[0]


def people_table():
    """PII columns whose values validate as nothing: only the header says what they are."""
    rng = random.Random(5)
    rows = ["first_name,last_name,date_of_birth,street_address,city"]
    for i in range(D.ROWS):
        rows.append("Name%d,Surname%d,19%02d-%02d-%02d,%d Main Street,Springfield"
                    % (i, i, rng.randint(40, 99), rng.randint(1, 12), rng.randint(1, 28), i + 1))
    return "\n".join(rows) + "\n"


@pytest.mark.parametrize("shape", ["utf-8", "utf-16", "utf-16-be", "gzip"])
def test_header_only_people_table_counts_its_rows(egressguard_bin, tmp, shape):
    # Proves: a 200-row table of names and birth dates gives bulk_pii by its CSV header in UTF-16 and gzipped too.
    text = people_table()
    data = gzip.compress(text.encode(), mtime=0) if shape == "gzip" else text.encode(shape)
    rc, findings = jsonl(egressguard_bin, write(tmp, "people-%s.csv" % shape, data))
    bulk = by_category(findings).get("bulk_pii", [])
    assert rc == 1 and bulk, findings
    assert bulk[0]["evidence"] == "CSV with %d records of people: date_of_birth" % D.ROWS, bulk


def png():
    raw = b"".join(b"\0" + bytes((x * y) & 255 for x in range(32)) for y in range(32))

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 32, 32, 8, 0, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_hard_negatives_stay_clean(egressguard_bin, tmp):
    # Proves: a PNG, random bytes, UTF-8 prose with accents and UTF-16 notes with no PII scan with exit 0 and no finding.
    rng = random.Random(11)
    docs = {
        "image.png": png(),
        "noise.bin": bytes(rng.getrandbits(8) for _ in range(64 << 10)),
        "prose.txt": ("Grüße aus Zürich: naïve café, façade, Øresund — " * 200).encode(),
        "notes-utf16.txt": "\r\n".join(D.MEETING_NOTES).encode("utf-16"),
        "notes-utf16be.txt": "\r\n".join(D.MEETING_NOTES).encode("utf-16-be"),
    }
    for name, data in docs.items():
        r = scan(egressguard_bin, write(tmp, name, data))
        assert r.returncode == 0 and not r.stdout.strip(), "%s: exit %d\n%s%s" % (name, r.returncode, r.stdout,
                                                                                  r.stderr[-500:])


def _zip(name, data):
    bio = io.BytesIO()
    with zipfile.ZipFile(bio, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(name, data)
    return bio.getvalue()


HEX_TABLES = {
    "hex": lambda b: b.hex().encode(),
    "xxd-p": lambda b: b"".join(b.hex().encode()[i:i + 60] + b"\n" for i in range(0, 2 * len(b), 60)),
    "json-upper": lambda b: json.dumps({"export": b.hex().upper(), "rows": D.ROWS}).encode(),
    "zip-in-hex": lambda b: _zip("customers.csv", b).hex().encode(),
}


@pytest.mark.parametrize("case", list(HEX_TABLES))
def test_hex_table_is_read_like_its_utf8_twin(egressguard_bin, tmp, case):
    # Proves: the 200-row table in hex gives credit_card x200, email x200 and bulk_pii, as UTF-8 does.
    rc, findings = jsonl(egressguard_bin, write(tmp, "hex-" + case + ".txt", HEX_TABLES[case](CSV.encode())))
    cats = by_category(findings)
    assert rc == 1, findings
    assert sum(int(f["count"]) for f in cats.get("credit_card", [])) == D.ROWS, findings
    assert sum(int(f["count"]) for f in cats.get("email", [])) == D.ROWS, findings
    bulk = cats.get("bulk_pii", [])
    assert bulk and bulk[0]["evidence"].startswith("CSV with %d records" % D.ROWS), bulk
    assert "undecodable" not in cats, findings
    if case == "zip-in-hex":
        assert {f.get("member") for f in cats["credit_card"]} == {"customers.csv"}, cats["credit_card"]


def test_hex_identifiers_stay_clean(egressguard_bin, tmp):
    # Proves: an API log full of hex hashes, trace ids and UUIDs (hex of random bytes) scans with exit 0 and no finding.
    rng = random.Random(5)
    lines = []
    for i in range(3000):
        lines.append(json.dumps({
            "trace_id": "%032x" % rng.getrandbits(128), "span_id": "%016x" % rng.getrandbits(64),
            "sha256": "%064x" % rng.getrandbits(256), "etag": "%032X" % rng.getrandbits(128),
            "request": "%08x-%04x-%04x-%04x-%012x" % tuple(rng.getrandbits(b) for b in (32, 16, 16, 16, 48)),
            "status": 200, "path": "/api/v1/orders/%d" % (100000 + i)}))
    r = scan(egressguard_bin, write(tmp, "api-log.jsonl", "\n".join(lines).encode()))
    assert r.returncode == 0 and not r.stdout.strip(), r.stdout[-2000:] + r.stderr[-500:]


def html_table(header, rows, title="Export"):
    """What a web application's report page looks like: escaped cells, indentation."""
    import html
    out = ["<!DOCTYPE html>", "<html><head><meta charset=\"utf-8\"><title>%s</title></head><body>" % title,
           "<h1>%s</h1>" % title, "<table class=\"report\">", "  <thead><tr>"]
    out += ["    <th>%s</th>" % html.escape(h) for h in header]
    out += ["  </tr></thead>", "  <tbody>"]
    for r in rows:
        out.append("  <tr>" + "".join("<td>%s</td>" % html.escape(c) for c in r) + "</tr>")
    out += ["  </tbody>", "</table>", "<p>Generated for internal use.</p></body></html>"]
    return "\n".join(out).encode()


def test_html_customer_table_is_read_like_its_csv_twin(egressguard_bin, tmp):
    # Proves: the 200-row customer table as an HTML table gives credit_card x200, email x200 and bulk_pii over its rows.
    rc, findings = jsonl(egressguard_bin, write(tmp, "customers.html", html_table(D.HEADER, D.customers())))
    cats = by_category(findings)
    assert rc == 1, findings
    assert sum(int(f["count"]) for f in cats.get("credit_card", [])) == D.ROWS, findings
    assert sum(int(f["count"]) for f in cats.get("email", [])) == D.ROWS, findings
    assert cats.get("bulk_pii") and "%d records of people" % D.ROWS in cats["bulk_pii"][0]["evidence"], findings


def test_html_people_table_counts_its_rows_by_its_header(egressguard_bin, tmp):
    # Proves: an HTML table of 200 people (names, birth dates, addresses: nothing a validator takes) is bulk_pii by its header row, as the CSV is.
    rows = [("Person %d" % i, "19%02d-%02d-%02d" % (50 + i % 40, 1 + i % 12, 1 + i % 28),
             "Bahnhofstrasse %d, 8001 Zürich" % (i + 1)) for i in range(D.ROWS)]
    rc, findings = jsonl(egressguard_bin, write(tmp, "people.html", html_table(("name", "date_of_birth", "address"),
                                                                               rows)))
    cats = by_category(findings)
    assert rc == 1 and cats.get("bulk_pii"), findings
    assert cats["bulk_pii"][0]["evidence"].startswith("CSV with %d records of people: date_of_birth" % D.ROWS), findings


def test_html_card_split_by_inline_markup_is_found(egressguard_bin, tmp):
    # Proves: a card whose groups a rich-text editor wrapped in <b>, <span style> and a comment is found, with offsets from its first digit to its last.
    body = (b"<html><body><p>Hello,</p><p>my card is <b>4539</b> <span style=\"color:#c00\">1488</span>"
            b"<!-- --> <i>0343</i>&nbsp;6467, thanks.</p></body></html>")
    rc, findings = jsonl(egressguard_bin, write(tmp, "mail.html", body))
    cards = by_category(findings).get("credit_card", [])
    assert rc == 1 and cards, findings
    assert (cards[0]["start"], cards[0]["end"]) == (body.index(b"4539"), body.index(b"6467") + 4), cards


def test_html_hard_negatives_stay_clean(egressguard_bin, tmp):
    # Proves: an HTML price list with order ids and an article with long reference numbers scan with exit 0 and no finding.
    rng = random.Random(9)
    prices = html_table(("order_id", "product", "price"),
                        [("ORD-%08d" % rng.randrange(10 ** 8), "Widget %d" % i, "%d.%02d" % (rng.randrange(500),
                                                                                          rng.randrange(100)))
                         for i in range(300)], title="Orders")
    article = ("<html><body><article>" + "".join(
        "<p>Reference <b>%d</b> of dossier <i>%d</i> was filed on 2024-%02d-%02d.</p>" % (
            rng.randrange(10 ** 11, 10 ** 12), rng.randrange(10 ** 7, 10 ** 8), 1 + i % 12, 1 + i % 28)
        for i in range(200)) + "</article></body></html>").encode()
    for name, data in (("orders.html", prices), ("article.html", article)):
        r = scan(egressguard_bin, write(tmp, name, data))
        assert r.returncode == 0 and not r.stdout.strip(), "%s: exit %d\n%s%s" % (name, r.returncode, r.stdout,
                                                                                  r.stderr[-500:])
