"""The deployment files agree with each other and with the binary: every Kubernetes
document parses and has a known kind, Services select a workload that exists, every
ConfigMap and Secret a pod mounts is defined (or created by the README's commands),
probes hit the admin port the embedded config listens on, container ports match the
configured listen ports, configured files live under a mount, and the embedded
egressguard.yaml / store.yaml pass `egressguard config check`. The systemd unit is
checked with systemd-analyze where that is available."""
import glob
import os
import re
import shutil
import subprocess

import pytest
import yaml

from conftest import run

SOURCE = os.environ.get("EGRESSGUARD_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
DEPLOY = os.path.join(SOURCE, "appliance", "deploy")
KNOWN_KINDS = {"Namespace", "ConfigMap", "Secret", "Service", "Deployment", "StatefulSet", "NetworkPolicy"}


@pytest.fixture(scope="module")
def docs():
    out = []
    files = sorted(glob.glob(os.path.join(DEPLOY, "kubernetes", "*.yaml")))
    assert files, "no manifests in appliance/deploy/kubernetes"
    for path in files:
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                if doc is not None:
                    out.append(doc)
    return out


def of_kind(docs, kind):
    return [d for d in docs if d["kind"] == kind]


def key(doc):
    return (doc["metadata"].get("namespace", ""), doc["metadata"]["name"])


def workloads(docs):
    return of_kind(docs, "Deployment") + of_kind(docs, "StatefulSet")


def pod_spec(w):
    return w["spec"]["template"]["spec"]


def container_config(docs, w):
    """The config file the workload's first container runs with, parsed, plus its ConfigMap key."""
    c = pod_spec(w)["containers"][0]
    args = c.get("args", [])
    path = args[args.index("--config") + 1]
    mount = next(m for m in c["volumeMounts"] if path.startswith(m["mountPath"] + "/"))
    volume = next(v for v in pod_spec(w)["volumes"] if v["name"] == mount["name"])
    cm = next(d for d in of_kind(docs, "ConfigMap")
              if key(d) == (w["metadata"]["namespace"], volume["configMap"]["name"]))
    file_key = os.path.relpath(path, mount["mountPath"])
    return yaml.safe_load(cm["data"][file_key]), cm["data"][file_key], file_key


def test_every_document_has_a_known_kind_and_a_name(docs):
    for d in docs:
        assert d.get("apiVersion"), d
        assert d["kind"] in KNOWN_KINDS, d["kind"]
        assert d["metadata"]["name"]
    names = [(d["kind"],) + key(d) for d in docs]
    assert len(names) == len(set(names)), "duplicate objects"
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "StatefulSet", "Service", "ConfigMap", "NetworkPolicy"} <= kinds


def test_namespaces_exist(docs):
    namespaces = {d["metadata"]["name"] for d in of_kind(docs, "Namespace")}
    for d in docs:
        if d["kind"] != "Namespace":
            assert d["metadata"].get("namespace") in namespaces, key(d)


def test_services_select_a_workload_and_its_ports(docs):
    for svc in of_kind(docs, "Service"):
        sel = svc["spec"]["selector"]
        matches = [w for w in workloads(docs) if w["metadata"]["namespace"] == svc["metadata"]["namespace"]
                   and all(w["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in sel.items())]
        assert matches, f"Service {key(svc)} selects no workload"
        for w in matches:
            assert all(w["spec"]["selector"]["matchLabels"].get(k) == v for k, v in sel.items())
            port_names = {p["name"] for c in pod_spec(w)["containers"] for p in c.get("ports", [])}
            for p in svc["spec"]["ports"]:
                assert p["targetPort"] in port_names, (key(svc), p)


def test_statefulset_has_a_volume_claim_and_a_governing_service(docs):
    (sts,) = of_kind(docs, "StatefulSet")
    claims = {c["metadata"]["name"] for c in sts["spec"]["volumeClaimTemplates"]}
    mounts = {m["name"] for c in pod_spec(sts)["containers"] for m in c["volumeMounts"]}
    assert claims & mounts, "the store's data volume is not mounted"
    assert (sts["metadata"]["namespace"], sts["spec"]["serviceName"]) in {key(s) for s in of_kind(docs, "Service")}


def readme_secrets():
    with open(os.path.join(SOURCE, "README.md")) as f:
        text = f.read()
    return set(re.findall(r"create secret (?:generic|tls) ([a-z0-9-]+)", text))


def test_referenced_configmaps_and_secrets_exist(docs):
    configmaps = {key(d) for d in of_kind(docs, "ConfigMap")}
    secrets = {key(d) for d in of_kind(docs, "Secret")}
    created = readme_secrets()
    for w in workloads(docs):
        ns = w["metadata"]["namespace"]
        for v in pod_spec(w).get("volumes", []):
            if "configMap" in v:
                assert (ns, v["configMap"]["name"]) in configmaps, (key(w), v)
            if "secret" in v:
                name = v["secret"]["secretName"]
                assert (ns, name) in secrets or name in created, \
                    f"{key(w)} mounts Secret {name}: neither a manifest nor a README `kubectl create secret`"
                assert v["secret"].get("defaultMode") == 0o400, "key files must not be group/other readable"
        mounted = {m["name"] for c in pod_spec(w)["containers"] + pod_spec(w).get("initContainers", [])
                   for m in c.get("volumeMounts", [])}
        claims = {c["metadata"]["name"] for c in w["spec"].get("volumeClaimTemplates", [])}
        assert mounted <= {v["name"] for v in pod_spec(w).get("volumes", [])} | claims, key(w)
        assert "fsGroup" not in pod_spec(w).get("securityContext", {}), \
            "fsGroup makes the mounted keys group-readable, which egressguard refuses"


def port_of(listen):
    return int(listen.rsplit(":", 1)[1])


def test_probes_and_ports_agree_with_the_embedded_config(docs):
    for w in workloads(docs):
        if not w["metadata"]["name"].startswith("egressguard"):
            continue
        config, _, file_key = container_config(docs, w)
        c = pod_spec(w)["containers"][0]
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        admin = port_of(config["admin"]["listen"])
        assert ports["admin"] == admin, (key(w), ports, config["admin"])
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}
        serving = config["proxy"]["listen"] if "proxy" in config else config["store"]["listen"]
        main_port = ports["proxy"] if "proxy" in config else ports["grpc"]
        assert main_port == port_of(serving), (key(w), file_key)
        # A store that serves the console declares its port under the name the Service targets.
        console = config.get("store", {}).get("console_listen")
        if console:
            assert ports.get("console") == port_of(console), (key(w), ports, console)
        # Every file the config names lives under one of the container's mounts.
        mounts = [m["mountPath"] for m in c["volumeMounts"]]

        def files(node):
            if isinstance(node, dict):
                for v in node.values():
                    yield from files(v)
            elif isinstance(node, str) and node.startswith("/"):
                yield node
        for path in files(config):
            assert any(path.startswith(m + "/") for m in mounts), (key(w), path, mounts)


def test_proxy_reports_to_the_store_service(docs):
    (proxy,) = [w for w in workloads(docs) if w["metadata"]["name"] == "egressguard-proxy"]
    config, _, _ = container_config(docs, proxy)
    host, port = config["reporter"]["store"].rsplit(":", 1)
    name, namespace = host.split(".")[:2]
    svc = next(s for s in of_kind(docs, "Service") if key(s) == (namespace, name))
    assert int(port) in {p["port"] for p in svc["spec"]["ports"]}


def test_network_policy_allows_apps_only_the_proxy_and_dns(docs):
    proxy_svc = next(s for s in of_kind(docs, "Service") if s["metadata"]["name"] == "egressguard-proxy")
    proxy_port = next(p["port"] for p in proxy_svc["spec"]["ports"] if p["name"] == "proxy")
    app_policies = [p for p in of_kind(docs, "NetworkPolicy") if p["spec"]["podSelector"] == {}
                    and "Egress" in p["spec"]["policyTypes"]]
    assert app_policies
    for pol in app_policies:
        rules = pol["spec"]["egress"]
        ports = sorted((p["protocol"], p["port"]) for r in rules for p in r["ports"])
        assert ports == sorted([("TCP", proxy_port), ("UDP", 53), ("TCP", 53)]), ports
        for r in rules:
            assert r.get("to"), "an egress rule without `to` would open every destination"
    # The example app goes through the proxy and trusts the cluster CA.
    app = next(w for w in workloads(docs) if w["metadata"]["namespace"] == "apps")
    env = {e["name"]: e["value"] for e in pod_spec(app)["containers"][0]["env"]}
    assert env["HTTPS_PROXY"].endswith(f"egressguard-proxy.egressguard.svc.cluster.local:{proxy_port}")
    ns = next(n for n in of_kind(docs, "Namespace") if n["metadata"]["name"] == "apps")
    ingress = next(p for p in of_kind(docs, "NetworkPolicy") if p["metadata"]["name"] == "egressguard-proxy-ingress")
    selectors = [f["namespaceSelector"]["matchLabels"] for r in ingress["spec"]["ingress"] for f in r["from"]]
    assert any(all(ns["metadata"]["labels"].get(k) == v for k, v in s.items()) for s in selectors)


def test_embedded_configs_pass_config_check(docs, egressguard_bin, workdir):
    checked = 0
    for w in workloads(docs):
        if not w["metadata"]["name"].startswith("egressguard"):
            continue
        _, text, file_key = container_config(docs, w)
        path = os.path.join(workdir, file_key)
        with open(path, "w") as f:
            f.write(text)
        p = run(egressguard_bin, "config", "check", path)
        assert p.returncode == 0, p.stderr
        checked += 1
    assert checked == 2


def test_systemd_unit(egressguard_bin, workdir):
    unit = os.path.join(DEPLOY, "systemd", "egressguard.service")
    text = open(unit).read()
    for needed in ("ProtectSystem=strict", "StateDirectory=egressguard", "ExecReload=/bin/kill -HUP $MAINPID",
                   "NoNewPrivileges=yes", "--config /etc/egressguard/egressguard.yaml"):
        assert needed in text, needed
    assert re.search(r"^(DynamicUser=yes|User=\S+)$", text, re.M)
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze not available")
    # verify wants the ExecStart binaries to exist: point a copy at the built binary.
    copy = os.path.join(workdir, "egressguard.service")
    with open(copy, "w") as f:
        f.write(text.replace("/usr/bin/egressguard", egressguard_bin))
    p = subprocess.run(["systemd-analyze", "verify", copy], capture_output=True, text=True, timeout=60)
    output = p.stdout + p.stderr
    if "not been booted with systemd" in output or "Failed to connect to bus" in output:
        pytest.skip("systemd-analyze cannot run here: " + output.strip()[:200])
    # verify exits 0 on unknown keys, but names the unit's file:line for each.
    assert p.returncode == 0 and "egressguard.service" not in output, output


def test_postgresql_variant(docs):
    """kubernetes/postgresql/: the store as a Deployment of 2+ replicas on one database,
    under the Service name the proxies already use, its URI from a Secret."""
    files = sorted(glob.glob(os.path.join(DEPLOY, "kubernetes", "postgresql", "*.yaml")))
    assert files, "no manifests in appliance/deploy/kubernetes/postgresql"
    pg_docs = []
    for path in files:
        with open(path) as f:
            pg_docs.extend(d for d in yaml.safe_load_all(f) if d is not None)
    for d in pg_docs:
        assert d["kind"] in KNOWN_KINDS and d["metadata"]["name"] and d["metadata"]["namespace"] == "egressguard"
    (store,) = [w for w in of_kind(pg_docs, "Deployment") if w["metadata"]["name"] == "egressguard-store"]
    assert store["spec"]["replicas"] >= 2
    (svc,) = [s for s in of_kind(pg_docs, "Service") if s["metadata"]["name"] == "egressguard-store"]
    assert svc["spec"]["selector"].items() <= store["spec"]["template"]["metadata"]["labels"].items()
    # The proxies' config names this Service and port: the variant changes nothing there.
    proxy_config, _, _ = container_config(docs, next(w for w in workloads(docs)
                                                     if w["metadata"]["name"] == "egressguard-proxy"))
    assert proxy_config["reporter"]["store"].startswith("egressguard-store.")
    assert {p["port"] for p in svc["spec"]["ports"]} >= {port_of(proxy_config["reporter"]["store"])}
    c = pod_spec(store)["containers"][0]
    args = c["args"]
    assert args[args.index("--db") + 1] == "$(EGRESSGUARD_STORE_DB)"
    (env,) = [e for e in c["env"] if e["name"] == "EGRESSGUARD_STORE_DB"]
    ref = env["valueFrom"]["secretKeyRef"]
    assert ref["key"] == "uri" and ref["name"] in readme_secrets()
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}
    # The shared store.yaml's ConfigMap exists, and its listen/admin ports are the container's.
    config, _, _ = container_config(docs + pg_docs, store)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports["grpc"] == port_of(config["store"]["listen"]) and ports["admin"] == port_of(config["admin"]["listen"])
    mounts = [m["mountPath"] for m in c["volumeMounts"]]
    for path in (config["store"]["tls"]["cert"], config["store"]["tls"]["key"], config["store"]["tls"]["client_ca"]):
        assert any(path.startswith(m + "/") for m in mounts), path
    # The README's URI: no password, and its passfile under the Secret's mount.
    with open(os.path.join(SOURCE, "README.md")) as f:
        uri = re.search(r"--from-literal=uri='([^']+)'", f.read()).group(1)
    assert uri.startswith("postgresql://") and ":" not in uri.split("://")[1].split("@")[0], uri
    passfile = re.search(r"passfile=([^&']+)", uri).group(1)
    db_mount = next(m for m in c["volumeMounts"] if m["name"] == "db")["mountPath"]
    assert passfile.startswith(db_mount + "/"), (passfile, db_mount)
    for v in pod_spec(store)["volumes"]:
        if "secret" in v:
            assert v["secret"].get("defaultMode") == 0o400
        if "configMap" in v:
            assert (store["metadata"]["namespace"], v["configMap"]["name"]) in {key(d) for d in of_kind(docs, "ConfigMap")}
