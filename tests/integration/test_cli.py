"""The CLI surface: --help lists the subcommands, version reports the libraries."""
import json
import pathlib

from conftest import run
from store_helpers import SOURCE_DIR

SUBCOMMANDS = ["run", "proxy", "store", "scan", "ca", "rules", "verdicts", "version"]


def test_help_lists_every_subcommand(egressguard_bin):
    p = run(egressguard_bin, "--help")
    assert p.returncode == 0, p.stderr
    for name in SUBCOMMANDS:
        assert f"\n  {name}" in p.stdout, f"{name} missing from --help:\n{p.stdout}"


def test_version_reports_library_versions(egressguard_bin):
    for args in (["version"], ["--version"]):
        p = run(egressguard_bin, *args)
        assert p.returncode == 0, p.stderr
        assert p.stdout.startswith("egressguard ")
        for lib in ("hyperscan 5.", "openssl   OpenSSL 3.", "grpc      1."):
            assert lib in p.stdout, p.stdout


def test_no_subcommand_is_a_usage_error(egressguard_bin):
    p = run(egressguard_bin)
    assert p.returncode == 2
    assert "subcommand" in p.stderr.lower()


def test_unknown_subcommand_is_refused(egressguard_bin):
    p = run(egressguard_bin, "frobnicate")
    assert p.returncode == 2


def test_a_command_that_cannot_start_says_why_in_the_log_format(egressguard_bin, workdir):
    # The same failure (no CA files), once for people and once for a log shipper.
    args = ["proxy", "--listen", "127.0.0.1:0", "--ca-cert", f"{workdir}/none.pem", "--ca-key", f"{workdir}/none.key"]
    text = run(egressguard_bin, *args)
    assert text.returncode == 2
    assert text.stderr.startswith("egressguard proxy: "), text.stderr
    as_json = run(egressguard_bin, "--log-format", "json", *args)
    assert as_json.returncode == 2
    lines = [json.loads(line) for line in as_json.stderr.splitlines()]  # every line parses
    fatal = lines[-1]
    assert fatal["level"] == "critical" and fatal["msg"].startswith("egressguard proxy: "), lines
    assert "none.pem" in fatal["msg"] or "none.key" in fatal["msg"], fatal


def test_rules_test_scores_located_occurrences_one_by_one(egressguard_bin, workdir):
    pack = f"{SOURCE_DIR}/rules/default"
    p = run(egressguard_bin, "rules", "test", pack, "--samples", f"{SOURCE_DIR}/tests/data/corpus")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "per occurrence (" in p.stdout, p.stdout
    # One file, two labelled addresses: the first located right, the second labelled where
    # the engine finds nothing (a label no report overlaps is missed) -> below --min.
    samples = pathlib.Path(workdir) / "samples"
    samples.mkdir()
    body = "to anna.meier@bluewin.ch and luca.keller@gmx.ch\n"
    (samples / "mail.txt").write_text(body)
    a = body.index("anna")
    (samples / "mail.txt.expect").write_text(f"email\nat email {a}-{a + 20}\nat email 0-2\n")
    p = run(egressguard_bin, "rules", "test", pack, "--samples", str(samples))
    assert p.returncode == 1, p.stdout + p.stderr
    assert "missed email: " in p.stdout and "mail.txt:0-2" in p.stdout, p.stdout
    assert "per occurrence email" in p.stdout, p.stdout
    # A sidecar that locates a category it does not list is refused with its line.
    (samples / "mail.txt.expect").write_text("email\nat iban 3-9\n")
    p = run(egressguard_bin, "rules", "test", pack, "--samples", str(samples))
    assert p.returncode == 2
    assert "mail.txt.expect:2: occurrence of 'iban', a category the sidecar does not list" in p.stderr, p.stderr
