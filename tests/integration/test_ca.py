"""`egressguard ca`: init/show/export/rotate/mint through the real binary, checked with the real `openssl verify`."""
import os
import stat
import subprocess

from ca_helpers import cert_enddate, cert_text, make_public_root, make_upstream, openssl
from conftest import run


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def verify(bundle, leaf, host=None, untrusted=None):
    args = ["openssl", "verify", "-purpose", "sslserver", "-CAfile", bundle]
    if untrusted:
        args += ["-untrusted", untrusted]
    if host:
        args += ["-verify_hostname", host]
    return subprocess.run(args + [leaf], capture_output=True, text=True, timeout=60)


def test_init_show_export_mint_verify(egressguard_bin, workdir):
    ca_dir = os.path.join(workdir, "ca")
    p = run(egressguard_bin, "ca", "init", "--dir", ca_dir, "--subject", "CN=IT Cluster CA,O=Example", "--days", "60")
    assert p.returncode == 0, p.stderr
    assert stat.S_IMODE(os.stat(os.path.join(ca_dir, "ca.key")).st_mode) == 0o600
    assert "PRIVATE KEY" not in p.stdout

    p = run(egressguard_bin, "ca", "show", "--dir", ca_dir)
    assert p.returncode == 0, p.stderr
    assert "subject:     CN=IT Cluster CA,O=Example" in p.stdout
    assert "key:         ecdsa-p256" in p.stdout
    assert "sha256:" in p.stdout and "not after:" in p.stdout

    bundle = write(os.path.join(workdir, "bundle.pem"), run(egressguard_bin, "ca", "export", "--dir", ca_dir).stdout)
    assert open(bundle).read().count("BEGIN CERTIFICATE") == 1

    root_crt, root_key = make_public_root(workdir)
    upstream = make_upstream(workdir, root_crt, root_key, "shop.example.com",
                             "DNS:shop.example.com,DNS:*.shop.example.com,IP:198.51.100.4,email:x@example.com",
                             days=5)
    p = run(egressguard_bin, "ca", "mint", "--dir", ca_dir, "--host", "shop.example.com",
            "--upstream-cert", upstream, "--upstream-ca", root_crt)
    assert p.returncode == 0, p.stderr
    leaf = write(os.path.join(workdir, "leaf.pem"), p.stdout)

    v = verify(bundle, leaf, host="shop.example.com")
    assert v.returncode == 0, v.stdout + v.stderr
    assert verify(bundle, leaf, host="cdn.shop.example.com").returncode == 0
    assert verify(bundle, leaf, host="other.example.com").returncode != 0
    assert verify(root_crt, leaf).returncode != 0  # the public root did not sign it

    text = cert_text(leaf)
    assert "DNS:shop.example.com, DNS:*.shop.example.com, IP Address:198.51.100.4" in text
    assert "email:" not in text
    assert "CA:FALSE" in text and "TLS Web Server Authentication" in text
    assert "Subject: CN = shop.example.com" in text
    # Never valid longer than the upstream (5 days here, less than the 30-day default).
    assert cert_enddate(leaf) <= cert_enddate(upstream)


def test_mint_refuses_host_mismatch_and_untrusted_upstream(egressguard_bin, workdir):
    ca_dir = os.path.join(workdir, "ca")
    assert run(egressguard_bin, "ca", "init", "--dir", ca_dir).returncode == 0
    root_crt, root_key = make_public_root(workdir)
    other_root, _ = make_public_root(workdir, name="other")
    upstream = make_upstream(workdir, root_crt, root_key, "a.example", "DNS:a.example")
    p = run(egressguard_bin, "ca", "mint", "--dir", ca_dir, "--host", "b.example", "--upstream-cert", upstream)
    assert p.returncode == 2
    assert "not valid for host b.example" in p.stderr
    p = run(egressguard_bin, "ca", "mint", "--dir", ca_dir, "--host", "a.example", "--upstream-cert", upstream,
            "--upstream-ca", other_root)
    assert p.returncode == 2
    assert "does not verify" in p.stderr
    assert "BEGIN CERTIFICATE" not in p.stdout


def test_rotation_keeps_old_leaves_valid_under_exported_bundle(egressguard_bin, workdir):
    ca_dir = os.path.join(workdir, "ca")
    assert run(egressguard_bin, "ca", "init", "--dir", ca_dir).returncode == 0
    root_crt, root_key = make_public_root(workdir)
    upstream = make_upstream(workdir, root_crt, root_key, "api.example.net", "DNS:api.example.net")
    mint = ["ca", "mint", "--dir", ca_dir, "--host", "api.example.net", "--upstream-cert", upstream]
    old_leaf = write(os.path.join(workdir, "old.pem"), run(egressguard_bin, *mint).stdout)
    old_bundle = write(os.path.join(workdir, "old-bundle.pem"), run(egressguard_bin, "ca", "export", "--dir", ca_dir).stdout)

    p = run(egressguard_bin, "ca", "rotate", "--dir", ca_dir)
    assert p.returncode == 0, p.stderr
    assert stat.S_IMODE(os.stat(os.path.join(ca_dir, "ca.key")).st_mode) == 0o600
    new_leaf = write(os.path.join(workdir, "new.pem"), run(egressguard_bin, *mint).stdout)
    bundle = write(os.path.join(workdir, "bundle.pem"), run(egressguard_bin, "ca", "export", "--dir", ca_dir).stdout)
    assert open(bundle).read().count("BEGIN CERTIFICATE") == 2

    assert verify(bundle, old_leaf, host="api.example.net").returncode == 0
    assert verify(bundle, new_leaf, host="api.example.net").returncode == 0
    # Minting moved to the new CA: the pre-rotation bundle does not cover the new leaf.
    assert verify(old_bundle, new_leaf).returncode != 0

    show = run(egressguard_bin, "ca", "show", "--dir", ca_dir).stdout
    assert show.count("current") == 1 and show.count("previous") == 1

    cm = run(egressguard_bin, "ca", "export", "--dir", ca_dir, "--format", "k8s-configmap",
             "--namespace", "egress", "--name", "egressguard-ca")
    assert cm.returncode == 0, cm.stderr
    assert "kind: ConfigMap" in cm.stdout and "namespace: egress" in cm.stdout
    assert cm.stdout.count("    -----BEGIN CERTIFICATE-----") == 2
    assert "PRIVATE KEY" not in cm.stdout


def test_refusals_exit_2_with_clear_messages(egressguard_bin, workdir):
    ca_dir = os.path.join(workdir, "ca")
    assert run(egressguard_bin, "ca", "init", "--dir", ca_dir).returncode == 0
    p = run(egressguard_bin, "ca", "init", "--dir", ca_dir)
    assert p.returncode == 2 and "already holds a CA" in p.stderr

    root_crt, root_key = make_public_root(workdir)
    upstream = make_upstream(workdir, root_crt, root_key, "a.example", "DNS:a.example")
    os.chmod(os.path.join(ca_dir, "ca.key"), 0o644)
    p = run(egressguard_bin, "ca", "mint", "--dir", ca_dir, "--host", "a.example", "--upstream-cert", upstream)
    assert p.returncode == 2 and "chmod 600" in p.stderr
    p = run(egressguard_bin, "ca", "show", "--dir", ca_dir)
    assert p.returncode == 1 and "group or others" in p.stdout
    os.chmod(os.path.join(ca_dir, "ca.key"), 0o600)

    # A key that is not the certificate's.
    other = os.path.join(workdir, "other")
    assert run(egressguard_bin, "ca", "init", "--dir", other).returncode == 0
    os.replace(os.path.join(other, "ca.key"), os.path.join(ca_dir, "ca.key"))
    p = run(egressguard_bin, "ca", "mint", "--dir", ca_dir, "--host", "a.example", "--upstream-cert", upstream)
    assert p.returncode == 2 and "does not match" in p.stderr

    p = run(egressguard_bin, "ca", "init", "--dir", os.path.join(workdir, "x"), "--key", "dsa-1024")
    assert p.returncode == 2
    p = run(egressguard_bin, "ca", "show", "--dir", os.path.join(workdir, "missing"))
    assert p.returncode == 2
    p = run(egressguard_bin, "ca")
    assert p.returncode == 2


def test_rsa_and_intermediate_of_offline_root(egressguard_bin, workdir):
    rsa_dir = os.path.join(workdir, "rsa")
    p = run(egressguard_bin, "ca", "init", "--dir", rsa_dir, "--key", "rsa-3072")
    assert p.returncode == 0, p.stderr
    assert "key:         rsa-3072" in run(egressguard_bin, "ca", "show", "--dir", rsa_dir).stdout

    root_key = os.path.join(workdir, "offline.key")
    root_crt = os.path.join(workdir, "offline.crt")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", root_key, "-out", root_crt, "-days", "365", "-subj", "/CN=Offline Root",
            "-addext", "basicConstraints=critical,CA:TRUE,pathlen:1",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    os.chmod(root_key, 0o600)
    ca_dir = os.path.join(workdir, "int")
    p = run(egressguard_bin, "ca", "init", "--dir", ca_dir, "--issuer-cert", root_crt, "--issuer-key", root_key)
    assert p.returncode == 0, p.stderr
    bundle = write(os.path.join(workdir, "bundle.pem"), run(egressguard_bin, "ca", "export", "--dir", ca_dir).stdout)
    assert "Offline Root" in cert_text(bundle)  # pods trust the root, not the intermediate

    pub_crt, pub_key = make_public_root(workdir, name="public")
    upstream = make_upstream(workdir, pub_crt, pub_key, "int.example", "DNS:int.example")
    leaf = write(os.path.join(workdir, "leaf.pem"),
                 run(egressguard_bin, "ca", "mint", "--dir", ca_dir, "--host", "int.example",
                     "--upstream-cert", upstream).stdout)
    # The proxy sends the intermediate in the chain; here it is ca.crt's first certificate.
    v = verify(bundle, leaf, host="int.example", untrusted=os.path.join(ca_dir, "ca.crt"))
    assert v.returncode == 0, v.stdout + v.stderr
