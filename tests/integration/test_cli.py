"""The CLI surface: --help lists the subcommands, version reports the libraries."""
import json

from conftest import run

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
