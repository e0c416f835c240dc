"""Documents as people send them, for test_containers.py, made by the real writers:
zipfile and tarfile (and the zip, tar and zstd commands), openpyxl (xlsx), python-docx
(docx), odfpy (odt, ods) and reportlab (pdf). Each sensitive document carries the same
customer table: 200 rows of distinct names, e-mail addresses and valid (Luhn) card numbers,
plus five valid IBANs. Every document is opened back with its library (PDF, which none
of them reads, by a small content-stream check) so a test that fails blames the product,
not a broken fixture."""
import base64
import bz2
import email
import email.message
import email.policy
import io
import lzma
import os
import re
import shutil
import subprocess
import tarfile
import zipfile
import zlib

ROWS = 200
# Published example IBANs (valid mod-97), as printed: groups of four.
IBANS = ["CH93 0076 2011 6238 5295 7", "DE89 3704 0044 0532 0130 00", "GB29 NWBK 6016 1331 9268 19",
         "FR14 2004 1010 0505 0001 3M02 606", "NL91 ABNA 0417 1643 00"]
IBAN_EVERY = ROWS // len(IBANS)  # one row in 40 has an IBAN: five in all

_FIRST = ["Anna", "Luca", "Noah", "Mia", "Elias", "Lea", "Leon", "Emma", "Levin", "Lina",
          "Julia", "Matteo", "Sofia", "David", "Laura", "Nico", "Sara", "Jonas", "Chiara", "Tim"]
_LAST = ["Meier", "Keller", "Brunner", "Frei", "Moser", "Huber", "Graf", "Baumann", "Schmid", "Wyss"]
_DOMAINS = ["bluewin.ch", "gmx.ch", "protonmail.com", "hispeed.ch", "sunrise.ch"]

MIME = {
    "zip": "application/zip",
    "tar": "application/x-tar",
    "tar.gz": "application/gzip",
    "tar.xz": "application/x-xz",
    "tar.zst": "application/zstd",
    "tar.bz2": "application/x-bzip2",
    "bz2": "application/x-bzip2",
    "lzma": "application/x-lzma",
    "7z": "application/x-7z-compressed",
    "xls": "application/vnd.ms-excel",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "odt": "application/vnd.oasis.opendocument.text",
    "ods": "application/vnd.oasis.opendocument.spreadsheet",
    "pdf": "application/pdf",
    "eml": "message/rfc822",
    # UTF-16 text as Excel's "Unicode Text" (LE with a mark) and a BOM-less big-endian
    # export write it: told by the bytes, so no charset is sent.
    "txt-utf16": "text/plain",
    "tsv-utf16be": "text/tab-separated-values",
}


# ------------------------------------------------------------------------------ values
def luhn_ok(digits):
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def with_check_digit(prefix):
    for d in "0123456789":
        if luhn_ok(prefix + d):
            return prefix + d
    raise AssertionError("unreachable")


def spaced(digits):
    return " ".join(digits[i:i + 4] for i in range(0, len(digits), 4))


def card_numbers(n=ROWS):
    """n distinct valid 16-digit cards (Visa and Mastercard 51-55 alternating), printed
    in groups of four as people type them."""
    out = []
    for i in range(n):
        prefix = ("453914%09d" if i % 2 == 0 else "542523%09d") % (104729 * i + 7919)
        out.append(spaced(with_check_digit(prefix)))
    assert len(set(out)) == n
    return out


def not_a_card(digits):
    """The same digits with the check digit broken: card-shaped, Luhn fails."""
    bad = digits[:-1] + str((int(digits[-1]) + 1) % 10)
    assert not luhn_ok(bad)
    return bad


def customers():
    """[(name, email, card, iban or "")]: ROWS rows, names/e-mails/cards all distinct."""
    cards = card_numbers()
    rows = []
    for i in range(ROWS):
        first, last = _FIRST[i % len(_FIRST)], _LAST[(i // len(_FIRST)) % len(_LAST)]
        email = "%s.%s%d@%s" % (first.lower(), last.lower(), i, _DOMAINS[i % len(_DOMAINS)])
        iban = IBANS[i // IBAN_EVERY] if i % IBAN_EVERY == 0 else ""
        rows.append(("%s %s" % (first, last), email, cards[i], iban))
    return rows


HEADER = ("name", "email", "card", "iban")


def customer_csv():
    lines = [",".join(HEADER)] + [",".join(r) for r in customers()]
    return ("\n".join(lines) + "\n").encode()


def customer_text(sep="\t", newline="\r\n"):
    """The table as Excel's "Unicode Text" and PowerShell write it: tab-separated, CRLF."""
    lines = [sep.join(HEADER)] + [sep.join(r) for r in customers()]
    return newline.join(lines) + newline


# ------------------------------------------------------------------------------ archives
class _Unseekable(io.RawIOBase):
    """A write-only stream without seek/tell: zipfile then writes each member with a data
    descriptor (general purpose bit 3, sizes after the data), as a zip streamed to a
    socket or a pipe is."""

    def __init__(self):
        self.buf = bytearray()

    def writable(self):
        return True

    def write(self, b):
        self.buf += b
        return len(b)


def zip_bytes(members, compression=zipfile.ZIP_DEFLATED, streamed=False, force_zip64=False):
    """members: [(name, bytes)]."""
    sink = _Unseekable() if streamed else io.BytesIO()
    with zipfile.ZipFile(sink, "w", compression=compression) as zf:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=(2026, 11, 26, 9, 31, 22))
            info.compress_type = compression
            with zf.open(info, "w", force_zip64=force_zip64) as w:
                w.write(data)
    return bytes(sink.buf) if streamed else sink.getvalue()


def nested_zip(levels, leaf_name, leaf):
    """A zip of a zip ... of leaf: `levels` archives; level k's single member is
    "level{k-1}.zip", the innermost one's is leaf_name. Returns (bytes, member path)."""
    data = zip_bytes([(leaf_name, leaf)])
    path = leaf_name
    for k in range(2, levels + 1):
        name = "level%d.zip" % (k - 1)
        data = zip_bytes([(name, data)])
        path = name + "!" + path
    return data, path


def tar_bytes(members, mode):
    """mode: "w", "w:gz", "w:xz"."""
    bio = io.BytesIO()
    with tarfile.open(fileobj=bio, mode=mode) as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1795685482
            info.mode = 0o644
            info.uname = info.gname = "export"
            tf.addfile(info, io.BytesIO(data))
    return bio.getvalue()


def tar_zst_file(workdir, out, members):
    """GNU tar --zstd, as `tar --zstd -cf out.tar.zst dir` is made on a desktop."""
    src = os.path.join(workdir, "tar-zst-src")
    os.makedirs(src, exist_ok=True)
    for name, data in members:
        with open(os.path.join(src, name), "wb") as f:
            f.write(data)
    subprocess.run(["tar", "--zstd", "-cf", out, "-C", src] + [n for n, _ in members], check=True,
                   capture_output=True)


def xls_bytes(header, rows, mark="\u2713"):
    """A legacy .xls (BIFF8 in an OLE compound file) from xlwt. Every cell ends in `mark`
    (a check mark: "verified"), a character past Latin-1, so each string is stored as
    UTF-16LE, as Excel stores any string with such a character."""
    import xlwt
    wb = xlwt.Workbook(encoding="utf-8")
    ws = wb.add_sheet("Customers")
    for c, h in enumerate(header):
        ws.write(0, c, h)
    for r, row in enumerate(rows, start=1):
        for c, v in enumerate(row):
            ws.write(r, c, "%s %s" % (v, mark) if v else "")
    bio = io.BytesIO()
    wb.save(bio)
    return bio.getvalue()


def _archive_with_cli(workdir, sub, out, name, data, argv):
    """Writes data as workdir/sub/name and runs argv (the archiver, given out and name
    last) there: how a desktop tool packs one file."""
    src = os.path.join(workdir, sub)
    os.makedirs(src, exist_ok=True)
    with open(os.path.join(src, name), "wb") as f:
        f.write(data)
    if os.path.exists(out):
        os.unlink(out)
    subprocess.run(argv + [out, name], cwd=src, check=True, capture_output=True)


def seven_zip_file(workdir, out, name, data):
    """`7z a` (p7zip): a format no decoder here reads, so it must not pass as read."""
    _archive_with_cli(workdir, "7z-src", out, name, data, ["7z", "a", "-bd", "-y"])


def encrypted_zip_file(workdir, out, name, data, password="s3cret-Pa55"):
    """`zip -P` (Info-ZIP, traditional PKWARE encryption): zipfile can read such members
    but cannot write them."""
    _archive_with_cli(workdir, "enc-src", out, name, data, ["zip", "-q", "-P", password])
    return password


def zip_bomb(mib=128):
    """One member of `mib` MiB of zeros, deflated at level 9: about 1000:1."""
    bio = io.BytesIO()
    zero = bytes(1 << 20)
    with zipfile.ZipFile(bio, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        info = zipfile.ZipInfo("disk.img", date_time=(2026, 11, 26, 9, 31, 22))
        info.compress_type = zipfile.ZIP_DEFLATED
        with zf.open(info, "w") as w:
            for _ in range(mib):
                w.write(zero)
    return bio.getvalue()


# ------------------------------------------------------------------------------ office
def xlsx_bytes(header, rows, extra_sheets=()):
    """openpyxl; text cells go to xl/sharedStrings.xml. extra_sheets: [(title, header, rows)]."""
    from openpyxl import Workbook
    wb = Workbook()
    ws = wb.active
    ws.title = "Customers"
    ws.append(list(header))
    for r in rows:
        ws.append(list(r))
    for title, h, rs in extra_sheets:
        s = wb.create_sheet(title)
        s.append(list(h))
        for r in rs:
            s.append(list(r))
    bio = io.BytesIO()
    wb.save(bio)
    return bio.getvalue()


def docx_bytes(title, paragraphs, header=None, rows=None, split_runs=()):
    """python-docx: a heading, paragraphs, a table, and paragraphs whose text is split
    into differently formatted runs as Word writes them. split_runs: [[(text, bold)]]."""
    import docx
    d = docx.Document()
    d.add_heading(title, level=1)
    for p in paragraphs:
        d.add_paragraph(p)
    for runs in split_runs:
        para = d.add_paragraph()
        for text, bold in runs:
            para.add_run(text).bold = bold
    if rows is not None:
        table = d.add_table(rows=len(rows) + 1, cols=len(header))
        cells = table._cells  # one lookup: python-docx's row/cell accessors re-walk the XML
        ncol = len(header)
        for j, h in enumerate(header):
            cells[j].text = h
        for i, r in enumerate(rows, 1):
            for j, v in enumerate(r):
                cells[i * ncol + j].text = v
    bio = io.BytesIO()
    d.save(bio)
    return bio.getvalue()


def _odf_table(name, header, rows):
    from odf.table import Table, TableCell, TableColumn, TableRow
    from odf.text import P
    t = Table(name=name)
    t.addElement(TableColumn(numbercolumnsrepeated=len(header)))
    for r in [header] + list(rows):
        tr = TableRow()
        for v in r:
            tc = TableCell(valuetype="string")
            tc.addElement(P(text=v))
            tr.addElement(tc)
        t.addElement(tr)
    return t


def ods_bytes(sheets):
    """odfpy spreadsheet. sheets: [(name, header, rows)]."""
    from odf.opendocument import OpenDocumentSpreadsheet
    doc = OpenDocumentSpreadsheet()
    for name, header, rows in sheets:
        doc.spreadsheet.addElement(_odf_table(name, header, rows))
    bio = io.BytesIO()
    doc.write(bio)
    return bio.getvalue()


def odt_bytes(title, paragraphs, header=None, rows=None):
    """odfpy text document: a heading, paragraphs and a table."""
    from odf.opendocument import OpenDocumentText
    from odf.text import H, P
    doc = OpenDocumentText()
    doc.text.addElement(H(outlinelevel=1, text=title))
    for p in paragraphs:
        doc.text.addElement(P(text=p))
    if rows is not None:
        doc.text.addElement(_odf_table("Customers", header, rows))
    bio = io.BytesIO()
    doc.write(bio)
    return bio.getvalue()


def pdf_bytes(title, paragraphs, header=None, rows=None, encrypt=None):
    """reportlab platypus: a report with paragraphs and a table over several pages (page
    content streams compressed, as reportlab writes them by default). encrypt: a user
    password (RC4, reportlab's standard security handler): opening needs it."""
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle
    bio = io.BytesIO()
    kw = {}
    if encrypt:
        from reportlab.lib import pdfencrypt
        kw["encrypt"] = pdfencrypt.StandardEncryption(encrypt, ownerPassword=encrypt + "-owner", strength=128)
    doc = SimpleDocTemplate(bio, pagesize=A4, title=title, author="Finance", invariant=1, **kw)
    styles = getSampleStyleSheet()
    story = [Paragraph(title, styles["Title"])]
    for p in paragraphs:
        story += [Paragraph(p, styles["BodyText"]), Spacer(1, 6)]
    if rows is not None:
        t = Table([list(header)] + [list(r) for r in rows], repeatRows=1)
        t.setStyle(TableStyle([("FONT", (0, 0), (-1, -1), "Helvetica", 7),
                               ("GRID", (0, 0), (-1, -1), 0.25, colors.grey)]))
        story.append(t)
    doc.build(story)
    return bio.getvalue()


# ------------------------------------------------------------------------------ checks
def pdf_text_strings(data):
    """The literal strings shown by the page content streams ((...) Tj / TJ), decoded
    through the filters reportlab uses (ASCII85, Flate). A check that the writer put the
    table down as text, not a reader."""
    out = []
    for m in re.finditer(rb"\d+ 0 obj((?:(?!endobj).)*?)stream\r?\n(.*?)endstream", data, re.S):
        dictionary, raw = m.group(1), m.group(2)
        if b"/Subtype" in dictionary:  # fonts, images: not page content
            continue
        filters = re.findall(rb"/(ASCII85Decode|FlateDecode)", dictionary)
        try:
            for f in filters:
                if f == b"ASCII85Decode":
                    text = raw.strip()
                    text = text[2:] if text.startswith(b"<~") else text
                    raw = base64.a85decode(text[:-2] if text.endswith(b"~>") else text)
                else:
                    raw = zlib.decompress(raw)
        except (ValueError, zlib.error):
            continue
        out += [s.replace(rb"\(", b"(").replace(rb"\)", b")") for s in re.findall(rb"\(((?:\\.|[^\\)])*)\)", raw)]
    return out


def verify(kind, data, expect_text=()):
    """Opens the document back with the library that wrote it and checks that each of
    expect_text is in it. Raises AssertionError otherwise."""
    if kind == "zip":
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            assert zf.testzip() is None
            blob = b"".join(_zip_leaves(zf))
    elif kind == "xls":
        assert data.startswith(bytes.fromhex("D0CF11E0A1B11AE1")), "not an OLE compound file"
        # The strings are UTF-16LE at either alignment; not one of them as 8-bit text.
        blob = (data.decode("utf-16-le", "replace") + data[1:].decode("utf-16-le", "replace")).encode()
        for t in expect_text:
            assert t.encode() not in data, "%s: %r stored as 8-bit text" % (kind, t)
    elif kind == "bz2":
        blob = bz2.decompress(data)
    elif kind == "lzma":
        blob = lzma.decompress(data, format=lzma.FORMAT_ALONE)
    elif kind.startswith("tar"):
        if kind == "tar.zst":
            data = subprocess.run(["zstd", "-d", "-q", "-c"], input=data, capture_output=True, check=True).stdout
        with tarfile.open(fileobj=io.BytesIO(data)) as tf:
            blob = b"".join(tf.extractfile(m).read() for m in tf.getmembers() if m.isfile())
    elif kind == "xlsx":
        from openpyxl import load_workbook
        wb = load_workbook(io.BytesIO(data), read_only=True)
        blob = "\n".join(str(c) for ws in wb.worksheets for row in ws.iter_rows(values_only=True)
                         for c in row if c is not None).encode()
    elif kind == "docx":
        import docx
        d = docx.Document(io.BytesIO(data))
        texts = [p.text for p in d.paragraphs]
        for t in d.tables:
            texts += [c.text for c in t._cells]
        blob = "\n".join(texts).encode()
    elif kind in ("odt", "ods"):
        from odf import teletype
        from odf.opendocument import load
        from odf.text import P
        doc = load(io.BytesIO(data))
        blob = "\n".join(teletype.extractText(p) for p in doc.getElementsByType(P)).encode()
    elif kind == "pdf":
        assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
        blob = b"\n".join(pdf_text_strings(data))
    elif kind == "txt-utf16":
        assert data.startswith(b"\xff\xfe")
        blob = data.decode("utf-16").encode()
    elif kind == "tsv-utf16be":
        blob = data.decode("utf-16-be").encode()
    elif kind == "eml":
        msg = email.message_from_bytes(data, policy=email.policy.default)
        blob = b"\n".join(part.get_payload(decode=True) or b"" for part in msg.walk() if not part.is_multipart())
    else:
        raise ValueError(kind)
    for t in expect_text:
        assert t.encode() in blob, "%s: %r not in the document read back" % (kind, t)


def _zip_leaves(zf):
    for name in zf.namelist():
        data = zf.read(name)
        if name.endswith(".zip"):
            with zipfile.ZipFile(io.BytesIO(data)) as inner:
                yield from _zip_leaves(inner)
        else:
            yield data


def have(tool):
    return shutil.which(tool) is not None


# ------------------------------------------------------------------------------ corpus
class Doc:
    """One document on disk: `name` its case id, `filename` what it is uploaded as."""

    def __init__(self, name, path, kind, data):
        self.name, self.path, self.kind, self.data = name, path, kind, data
        self.filename = os.path.basename(path)
        self.mime = MIME[kind]


INTRO = ["Customer export for the quarterly reconciliation, prepared by the finance team.",
         "Cards on file and the payout accounts of each customer are listed below."]

MEETING_NOTES = [
    "Weekly planning meeting of the platform team, held in the Zurich office.",
    "We agreed to move the release of the reporting module to the second week of December, "
    "after the load tests on the staging cluster are complete.",
    "Action items: Anna prepares the rollout checklist, Luca reviews the alerting thresholds, "
    "and Mia updates the runbook for the nightly batch jobs.",
    "The next meeting takes place on Thursday at ten o'clock in room Limmat.",
]

PROSE_WITH_REFERENCES = [
    "Annual statement of the framework agreement with our logistics partner. All amounts are in Swiss francs.",
    "Our reference 20261126-000482-77 covers the renewal; the ledger entry 98765432109876543210 records "
    "the settlement of the previous period.",
    # Card-shaped (16 digits, a Visa prefix) but failing the Luhn check: not cards.
    "Invoice batch %s was re-issued after a clerical error; the original batch number %s is void."
    % (not_a_card("4539148803436467"), not_a_card("5425233430109903")),
    "The payment slip carries the QR reference 21 00000 00003 13947 14300 09017 and the creditor reference "
    "RF18 5390 0754 7034.",
    "Consignments are tracked under 1Z999AA10123456784 and 00340434161094042557; the customs declaration "
    "number is 26CH000000123456E1.",
    "Volumes grew by 12 percent over the year, mostly in the second half, and the service level stayed "
    "above 99.5 percent in every month.",
]

PRODUCTS_HEADER = ("sku", "product", "ean", "unit_price", "qty", "order_id")


def product_rows(n=150):
    names = ["Desk lamp", "Office chair", "Monitor arm", "USB-C dock", "Notebook A5", "Whiteboard",
             "Cable tray", "Keyboard", "Headset", "Standing desk"]
    rows = []
    for i in range(n):
        ean = "7612345%05d" % (i * 37 % 100000)
        ean += str((10 - sum(int(c) * (3 if k % 2 else 1) for k, c in enumerate(ean)) % 10) % 10)  # EAN-13
        rows.append(("A-%04d" % (1000 + i), names[i % len(names)], ean, round(9.9 + (i % 40) * 2.5, 2),
                     1 + i % 12, "2026112609%04d" % (3100 + i)))
    return rows


def source_files():
    """Real source code: modules of the Python standard library (ones whose headers carry
    no author's e-mail address, which would rightly alert)."""
    import json as _json
    lib = os.path.dirname(os.path.dirname(_json.__file__))
    out = []
    for rel in ("json/decoder.py", "json/encoder.py", "json/scanner.py", "json/tool.py", "string.py",
                "heapq.py", "bisect.py"):
        with open(os.path.join(lib, rel), "rb") as f:
            out.append(("src/" + rel, f.read()))
    return out


# ------------------------------------------------------------------------------ e-mail
def eml_bytes(subject, body, attachments=(), body_cte=None):
    """An RFC 5322 message written by Python's email package, as a mail client saves it
    (.eml) or a mail API takes it: a text body (quoted-printable when body_cte says so;
    the encoder breaks lines longer than 76 characters with soft line breaks, so values
    are split across lines) and attachments [(filename, bytes)] in base64."""
    msg = email.message.EmailMessage()
    msg["From"] = "Anna Muster <anna.muster@bank.example>"
    msg["To"] = "partner@fintech.example"
    msg["Subject"] = subject
    msg["Date"] = "Mon, 07 Dec 2026 09:15:00 +0100"
    msg.set_content(body, charset="utf-8", cte=body_cte)
    for name, data in attachments:
        msg.add_attachment(data, maintype="text", subtype="csv", filename=name)
    return msg.as_bytes(policy=email.policy.SMTP)


def build_corpus(d):
    """Writes every document into d; returns {case name: Doc}."""
    rows = customers()
    table = [(a, b, c, e) for a, b, c, e in rows]
    csv = customer_csv()
    cards = [r[2] for r in rows]
    expect = [cards[0], cards[-1], rows[-1][1], IBANS[-1]]
    docs = {}

    def put(name, filename, kind, data, check=True, expect_text=expect):
        path = os.path.join(d, filename)
        with open(path, "wb") as f:
            f.write(data)
        if check:
            verify(kind, data, expect_text)
        docs[name] = Doc(name, path, kind, data)
        return path

    members = [("customers.csv", csv)]
    put("zip", "upload.zip", "zip", zip_bytes(members))
    put("zip-stored", "stored.zip", "zip", zip_bytes(members, zipfile.ZIP_STORED))
    dd = zip_bytes(members, streamed=True)
    assert zipfile.ZipFile(io.BytesIO(dd)).infolist()[0].flag_bits & 0x08, "no data descriptor"
    put("zip-data-descriptor", "streamed.zip", "zip", dd)
    z64 = zip_bytes(members, force_zip64=True)
    assert b"\x01\x00" in z64[:64], "no ZIP64 extra field in the local header"
    put("zip64", "zip64.zip", "zip", z64)
    inner = zip_bytes(members)
    put("zip-nested", "nested.zip", "zip",
        zip_bytes([("README.txt", b"Quarterly export, see inner.zip\n"), ("inner.zip", inner)]))
    put("tar", "customers.tar", "tar", tar_bytes(members, "w"))
    put("tar.gz", "customers.tar.gz", "tar.gz", tar_bytes(members, "w:gz"))
    put("tar.xz", "customers.tar.xz", "tar.xz", tar_bytes(members, "w:xz"))
    put("tar.bz2", "customers.tar.bz2", "tar.bz2", tar_bytes(members, "w:bz2"))
    # Compressed files that are no HTTP content coding: `bzip2` and `lzma` as a desktop
    # writes them, and zip members compressed with bzip2 and LZMA (methods 12 and 14).
    put("csv.bz2", "customers.csv.bz2", "bz2", bz2.compress(csv))
    put("csv.lzma", "customers.csv.lzma", "lzma", lzma.compress(csv, format=lzma.FORMAT_ALONE))
    put("zip-bzip2", "bzip2.zip", "zip", zip_bytes(members, zipfile.ZIP_BZIP2))
    put("zip-lzma", "lzma.zip", "zip", zip_bytes(members, zipfile.ZIP_LZMA, streamed=True))
    zst = os.path.join(d, "customers.tar.zst")
    tar_zst_file(d, zst, members)
    with open(zst, "rb") as f:
        put("tar.zst", "customers.tar.zst", "tar.zst", f.read())
    put("xlsx", "customers.xlsx", "xlsx", xlsx_bytes(HEADER, table))
    put("xls-utf16", "customers.xls", "xls", xls_bytes(HEADER, table))
    put("docx", "customers.docx", "docx", docx_bytes("Customer export", INTRO, HEADER, table))
    put("odt", "customers.odt", "odt", odt_bytes("Customer export", INTRO, HEADER, table))
    put("ods", "customers.ods", "ods", ods_bytes([("Customers", HEADER, table)]))
    put("pdf", "customers.pdf", "pdf", pdf_bytes("Customer export", INTRO, HEADER, table))
    put("eml-attachment", "export.eml", "eml",
        eml_bytes("Customer export", "Hallo, anbei der Export.\n", attachments=[("customers.csv", csv)]))
    qp = eml_bytes("Customer export", csv.decode(), body_cte="quoted-printable")
    assert b"=\r\n" in qp, "no soft line break in the quoted-printable body"
    put("eml-quoted-printable", "export-qp.eml", "eml", qp)

    # UTF-16 text: a CSV with a mark (str.encode('utf-16'): little-endian, FF FE), a
    # BOM-less big-endian TSV, and the CSV as a zip member.
    put("utf16-csv", "customers-utf16.txt", "txt-utf16", csv.decode().encode("utf-16"))
    put("utf16be-tsv", "customers-utf16be.tsv", "tsv-utf16be", customer_text().encode("utf-16-be"))
    put("zip-utf16", "unicode.zip", "zip", zip_bytes([("customers-utf16.txt", csv.decode().encode("utf-16"))]),
        check=False)

    # One card and one IBAN typed into a paragraph and split into runs of different
    # formatting, as Word stores a partly bold number.
    split_card, split_iban = card_numbers(ROWS + 1)[-1], IBANS[0]
    put("docx-split-runs", "note.docx", "docx",
        docx_bytes("Payment note", ["Please update the customer's payment details."],
                   split_runs=[[("Card on file: ", False), (split_card[:7], False), (split_card[7:], True)],
                               [("Payout to ", False), (split_iban[:12], True), (split_iban[12:], False)]]),
        expect_text=[])

    # Unreadable on purpose.
    put("zip-bomb", "bomb.zip", "zip", zip_bomb(128), check=False)
    deep, _ = nested_zip(6, "customers.csv", csv)
    put("zip-deep", "deep.zip", "zip", deep)
    if have("7z"):
        sz = os.path.join(d, "customers.7z")
        seven_zip_file(d, sz, "customers.csv", csv)
        with open(sz, "rb") as f:
            docs["7z"] = Doc("7z", sz, "7z", f.read())
    whole = zip_bytes(members)
    put("zip-truncated", "truncated.zip", "zip", whole[: len(whole) * 6 // 10], check=False)

    # Encrypted: readable only with the password.
    enc = os.path.join(d, "encrypted.zip")
    password = encrypted_zip_file(d, enc, "customers.csv", csv)
    with open(enc, "rb") as f:
        data = f.read()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        info = zf.infolist()[0]
        assert info.flag_bits & 0x01, "zip -P did not encrypt"
        assert zf.read(info, pwd=password.encode()) == csv
    docs["zip-encrypted"] = Doc("zip-encrypted", enc, "zip", data)
    epdf = pdf_bytes("Customer export", INTRO, HEADER, table[:40], encrypt="s3cret-Pa55")
    assert b"/Encrypt" in epdf and cards[0].encode() not in epdf
    put("pdf-encrypted", "protected.pdf", "pdf", epdf, check=False)

    # Hard negatives: look like data, carry none.
    put("clean-xlsx", "prices.xlsx", "xlsx",
        xlsx_bytes(PRODUCTS_HEADER, product_rows(),
                   extra_sheets=[("Totals", ("month", "orders", "revenue"),
                                  [("2026-%02d" % m, 410 + m * 7, 18250.5 + m * 311) for m in range(1, 13)])]),
        expect_text=["Monitor arm"])
    put("clean-pdf", "statement.pdf", "pdf", pdf_bytes("Annual statement", PROSE_WITH_REFERENCES),
        expect_text=["98765432109876543210"])
    put("clean-docx", "minutes.docx", "docx", docx_bytes("Platform team", MEETING_NOTES),
        expect_text=["runbook"])
    put("clean-zip", "source.zip", "zip", zip_bytes(source_files()), expect_text=["JSONDecodeError"])
    put("clean-utf16", "minutes-utf16.txt", "txt-utf16", "\r\n".join(MEETING_NOTES).encode("utf-16"),
        expect_text=["runbook"])
    return docs
