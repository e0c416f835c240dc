"""`egressguard scan` on real files and stdin: exit codes, JSONL fields, offsets, errors."""
import json
import os

from conftest import run

CARD = "4111 1111 1111 1111"
CLEAN = '{"order": 1182, "sku": "A-17", "ts": "2026-11-26T09:31:22Z"}\n'


def write(workdir, name, data):
    path = os.path.join(workdir, name)
    with open(path, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())
    return path


def test_clean_file_exits_zero(egressguard_bin, workdir):
    path = write(workdir, "clean.json", CLEAN)
    r = run(egressguard_bin, "scan", path)
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""


def test_findings_jsonl_fields_and_offsets(egressguard_bin, workdir):
    body = '{"note": "pay", "card": "' + CARD + '", "mail": "jane.doe@acme-corp.ch"}\n'
    path = write(workdir, "leak.json", body)
    key = write(workdir, "fp.key", b"k" * 32)
    os.chmod(key, 0o644)
    refused = run(egressguard_bin, "scan", "--fingerprint-key-file", key, path)
    assert refused.returncode == 2 and "chmod 600" in refused.stderr  # a secret key readable by others
    os.chmod(key, 0o600)
    r = run(egressguard_bin, "scan", "--format", "jsonl", "--fingerprint-key-file", key, path)
    assert r.returncode == 1, r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    by_cat = {f["category"]: f for f in lines}
    assert {"credit_card", "email"} <= set(by_cat)
    for f in lines:
        assert {"path", "rule", "category", "start", "end", "count", "action", "evidence"} <= set(f)
        assert f["path"] == path
    card = by_cat["credit_card"]
    assert (card["start"], card["end"]) == (body.index(CARD), body.index(CARD) + len(CARD))
    assert card["action"] == "block"
    assert card["count"] == 1
    assert "1111 1111 1111" not in card["evidence"]  # redacted
    assert len(card["fingerprint"]) == 64
    assert CARD not in r.stdout and "jane.doe" not in r.stdout  # never the raw value


def test_stdin_and_text_format(egressguard_bin):
    r = run(egressguard_bin, "scan", "-", input="iban CH93 0076 2011 6238 5295 7\n")
    assert r.returncode == 1, r.stderr
    assert r.stdout.startswith("(stdin):5-31: iban "), r.stdout


def test_dump_spans_whole_file(egressguard_bin, workdir):
    body = "--\n-- PostgreSQL database dump\n--\n" + "".join(
        f"INSERT INTO public.users VALUES ({i}, 'u{i}');\n" for i in range(60))
    path = write(workdir, "dump.sql", body)
    r = run(egressguard_bin, "scan", "--format", "jsonl", path)
    assert r.returncode == 1, r.stderr
    dumps = [json.loads(line) for line in r.stdout.splitlines() if '"db_dump"' in line]
    assert dumps and all((d["start"], d["end"]) == (0, len(body)) for d in dumps)


def test_missing_file_and_bad_pack_exit_two(egressguard_bin, workdir):
    clean = write(workdir, "clean.txt", CLEAN)
    r = run(egressguard_bin, "scan", clean, os.path.join(workdir, "nope"))
    assert r.returncode == 2
    assert "nope" in r.stderr
    bad = write(workdir, "bad.yaml", "name: x\nversion: '1'\nrules:\n  - id: bad\n    category: x\n"
                "    patterns: ['a(b']\n    action: BLOCK\n")
    r = run(egressguard_bin, "scan", "--rules", bad, clean)
    assert r.returncode == 2
    assert "bad" in r.stderr


def test_custom_pack_and_chunked_large_file(egressguard_bin, workdir):
    pack = write(workdir, "pack.yaml", "name: t\nversion: '1'\nrules:\n  - id: t.marker\n    category: marker\n"
                 "    patterns: ['SECRET-[0-9]{6}']\n    action: ALERT\n")
    # the marker straddles the 64 KiB read boundary
    body = b"x" * (65536 - 5) + b"SECRET-123456" + b"y" * 1000
    path = write(workdir, "big.bin", body)
    r = run(egressguard_bin, "scan", "--rules", pack, "--format", "jsonl", path)
    assert r.returncode == 1, r.stderr
    f = json.loads(r.stdout.splitlines()[0])
    assert (f["rule"], f["start"], f["end"], f["action"]) == ("t.marker", 65531, 65544, "alert")


# ---------------------------------------------------------------- --each-match
# Luhn-valid cards written three ways; none is a published test PAN.
EACH_CARDS = ["4539 1488 0343 6467", "5425-2334-3010-9903", "4916338506082832"]


def each_match_body():
    body, at = "order 1182\n", []
    for i, card in enumerate(EACH_CARDS):
        body += f"line {i}: paid with "
        at.append(len(body))
        body += card + "\n"
    return body, at


def test_each_match_one_line_per_occurrence(egressguard_bin, workdir):
    body, at = each_match_body()
    path = write(workdir, "three.txt", body)
    key = write(workdir, "fp.key", b"k" * 32)
    os.chmod(key, 0o600)
    default = run(egressguard_bin, "scan", "--format", "jsonl", path)
    assert default.returncode == 1, default.stderr
    default_lines = [json.loads(line) for line in default.stdout.splitlines()]
    assert [f["category"] for f in default_lines] == ["credit_card"]
    assert default_lines[0]["count"] == 3 and "spans" not in default_lines[0]  # default output unchanged

    r = run(egressguard_bin, "scan", "--format", "jsonl", "--each-match", "--fingerprint-key-file", key, path)
    assert r.returncode == 1, r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(lines) == 3, r.stdout
    for line, start, card in zip(lines, at, EACH_CARDS):
        assert set(default_lines[0]) <= set(line)  # the same fields as a finding's line
        assert (line["start"], line["end"]) == (start, start + len(card))
        assert line["count"] == 1 and line["category"] == "credit_card" and line["path"] == path
        assert line["rule"] == default_lines[0]["rule"] and line["action"] == default_lines[0]["action"]
        assert len(line["fingerprint"]) == 64
        assert "member" not in line
    assert len({line["fingerprint"] for line in lines}) == 3
    assert lines[0]["evidence"] == default_lines[0]["evidence"]
    for card in EACH_CARDS:  # never the raw value
        digits = card.replace(" ", "").replace("-", "")
        assert card not in r.stdout and digits not in r.stdout and digits[4:12] not in r.stdout

    text = run(egressguard_bin, "scan", "--each-match", path)
    assert text.returncode == 1, text.stderr
    starts = [int(line.split(":")[1].split("-")[0]) for line in text.stdout.splitlines()]
    assert starts == at, text.stdout


def test_each_match_repeats_and_aggregates(egressguard_bin, workdir):
    # One address repeated: one finding (count 1), one line per occurrence. Past the
    # bulk threshold (50 records of people) the bulk_pii finding keeps its one line and its count.
    body = "".join(f"cron: mail sent to ops@acme-corp.ch ({i})\n" for i in range(5))
    body += "".join(f"to: user{i}@example-corp.ch\n" for i in range(60))
    path = write(workdir, "cron.log", body)
    r = run(egressguard_bin, "scan", "--format", "jsonl", "--each-match", path)
    assert r.returncode == 1, r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    mails = [f for f in lines if f["category"] == "email"]
    assert len(mails) == 65 and all(f["count"] == 1 for f in mails)
    assert [f["start"] for f in mails[:5]] == [m.start() for m in __import__("re").finditer("ops@", body)]
    bulk = [f for f in lines if f["category"] == "bulk_pii"]
    assert len(bulk) == 1 and bulk[0]["count"] >= 50


def test_each_match_names_zip_members(egressguard_bin, workdir):
    import io
    import zipfile
    csv = f"id,note\n1,pay with {EACH_CARDS[0]}\n2,and {EACH_CARDS[1]}\n"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("readme.txt", "the export is attached\n")
        z.writestr("export/customers.csv", csv)
    data = buf.getvalue()
    path = write(workdir, "upload.zip", data)
    r = run(egressguard_bin, "scan", "--format", "jsonl", "--each-match", path)
    assert r.returncode == 1, r.stderr
    cards = [json.loads(line) for line in r.stdout.splitlines() if '"credit_card"' in line]
    assert len(cards) == 2, r.stdout
    for line, card in zip(cards, EACH_CARDS[:2]):
        assert line["member"] == "export/customers.csv"
        at = data.index(card.encode())  # a stored member: exact offsets in the archive
        assert (line["start"], line["end"]) == (at, at + len(card))
    text = run(egressguard_bin, "scan", "--each-match", path)
    assert text.stdout.count(path + "!export/customers.csv:") == 2, text.stdout


def test_each_match_help_states_the_bound(egressguard_bin):
    r = run(egressguard_bin, "scan", "--help")
    assert r.returncode == 0
    assert "--each-match" in r.stdout and "100000" in r.stdout, r.stdout
