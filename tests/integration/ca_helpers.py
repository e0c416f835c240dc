"""Fixtures for the CA integration tests: upstream certificates made with the openssl CLI."""
import os
import subprocess


def openssl(*args, cwd=None):
    p = subprocess.run(["openssl", *args], capture_output=True, text=True, cwd=cwd, timeout=60)
    assert p.returncode == 0, f"openssl {' '.join(args)} failed:\n{p.stderr}"
    return p


def make_public_root(d, name="root"):
    """A throwaway 'public' root CA (what the upstream's real certificate chains to)."""
    key, crt = os.path.join(d, f"{name}.key"), os.path.join(d, f"{name}.crt")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", key, "-out", crt, "-days", "30", "-subj", f"/CN=Integration {name}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    os.chmod(key, 0o600)
    return crt, key


def make_upstream(d, root_crt, root_key, cn, sans, days=10, name="upstream"):
    """An upstream server certificate signed by the root, with the given SAN string."""
    key, csr, crt = (os.path.join(d, f"{name}.{ext}") for ext in ("key", "csr", "crt"))
    ext = os.path.join(d, f"{name}.ext")
    with open(ext, "w") as f:
        f.write(f"basicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName={sans}\n")
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", key, "-out", csr, "-subj", f"/CN={cn}")
    openssl("x509", "-req", "-in", csr, "-CA", root_crt, "-CAkey", root_key, "-CAcreateserial",
            "-out", crt, "-days", str(days), "-extfile", ext)
    return crt


def cert_text(path):
    return openssl("x509", "-in", path, "-noout", "-text").stdout


def cert_enddate(path):
    """notAfter as the openssl CLI prints it, parsed to epoch seconds."""
    out = openssl("x509", "-in", path, "-noout", "-enddate").stdout.strip()
    from datetime import datetime, timezone
    value = out.split("=", 1)[1]
    return datetime.strptime(value, "%b %d %H:%M:%S %Y %Z").replace(tzinfo=timezone.utc).timestamp()
