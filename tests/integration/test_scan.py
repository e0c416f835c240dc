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
