"""The officers' web console in a real browser (Debian's headless Chromium through
Selenium) against a real store whose verdicts come from traffic through a real proxy:
sign-in, the overview's totals against `verdicts stats`, filtering and opening
verdicts, push / activate (refused alone) / approve by a second officer / the proxy
picking the pack up, the auditor's view and refusals, and forged sessions and
cross-site posts refused. Screenshots of each page land in BUILD/console-screenshots/."""
import base64
import http.server
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time

import pytest

from console_helpers import COOKIE, ConsoleStore
from proxy_helpers import Origin, Pki
from store_helpers import StoreProxy, free_port, pb  # noqa: F401

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402
from selenium.common.exceptions import (ElementClickInterceptedException,  # noqa: E402
                                        ElementNotInteractableException, StaleElementReferenceException)

CARD_BODY = "card 4539 1488 0343 6467 and 5425 2334 3010 9903\n"
RAW_CARDS = ("4539 1488 0343 6467", "4539148803436467", "5425 2334 3010 9903", "5425233430109903")


def screenshots_dir():
    build = os.environ.get("EGRESSGUARD_BUILD_DIR") or os.path.dirname(
        os.path.dirname(os.path.abspath(os.environ["EGRESSGUARD_BIN"])))
    d = os.path.join(build, "console-screenshots")
    os.makedirs(d, exist_ok=True)
    return d


def spki_pin(cert_file):
    """base64 SHA-256 of the certificate's public key: Chromium trusts exactly that key."""
    pub = subprocess.run(["openssl", "x509", "-in", cert_file, "-pubkey", "-noout"], capture_output=True, check=True)
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"], input=pub.stdout, capture_output=True,
                         check=True)
    digest = subprocess.run(["openssl", "dgst", "-sha256", "-binary"], input=der.stdout, capture_output=True, check=True)
    return base64.b64encode(digest.stdout).decode()


class Waiter:
    """WebDriverWait that says what the page showed when it gives up."""

    def __init__(self, driver):
        self.driver, self.inner = driver, WebDriverWait(driver, 30)

    def until(self, condition):
        try:
            return self.inner.until(condition)
        except Exception:
            main = self.driver.find_elements(By.ID, "main")
            logs = self.driver.get_log("browser") if hasattr(self.driver, "get_log") else []
            raise AssertionError(f"page shows: {main[0].text if main else self.driver.page_source[:2000]!r}; "
                                 f"console: {logs}")


class Browser:
    def __init__(self, console):
        self.profile = tempfile.mkdtemp(prefix="egressguard-chromium-")
        opts = webdriver.ChromeOptions()
        opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
        for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--disable-dev-shm-usage", "--window-size=1280,800", f"--user-data-dir={self.profile}",
                     f"--ignore-certificate-errors-spki-list={spki_pin(console.certs.server + '.crt')}"):
            opts.add_argument(flag)
        self.driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"),
                                       options=opts)
        self.console = console
        self.wait = Waiter(self.driver)

    def sign_in(self, user, role):
        self.driver.delete_all_cookies()
        self.driver.get(self.console.login_url(user, role))
        self.wait.until(lambda d: f"{user} ({role})" in d.find_element(By.ID, "who").text)

    def page(self, name):
        self.driver.get(f"{self.console.url}/#/{name}")
        self.wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "main h1"))

    def click(self, by, selector):
        """Click what `selector` names once it can take the click. The element is looked up
        afresh on each try: a page that re-renders after an async call (the packs page
        refreshes its tables after an approval) may replace it or shift another element over
        it between the lookup and the click, which is a race in the test, not a fault."""
        def attempt(d):
            try:
                element = d.find_element(by, selector)
                d.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
                element.click()
                return True
            except (ElementClickInterceptedException, ElementNotInteractableException,
                    StaleElementReferenceException):
                return False
        self.wait.until(attempt)

    def shot(self, name):
        self.driver.save_screenshot(os.path.join(screenshots_dir(), f"{name}.png"))

    def fetch_post(self, method, body):
        """A POST from the page's own script, as the console's JS makes it: (status, json)."""
        return self.driver.execute_async_script("""
            const [method, body, done] = arguments;
            const s = await (await fetch('/api/v1/session')).json();
            const r = await fetch('/api/v1/' + method, {method: 'POST', body: JSON.stringify(body),
              headers: {'Content-Type': 'application/json', 'X-CSRF-Token': s.csrf_token}});
            done([r.status, await r.json()]);""", method, body)

    def quit(self):
        self.driver.quit()
        shutil.rmtree(self.profile, ignore_errors=True)


def cli(binary, *args):
    r = subprocess.run([binary, *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def send(proxy, pki, origin_port, source_ip, body=None):
    args = ["curl", "-sS", "--max-time", "30", "--interface", source_ip, "--proxy", f"http://127.0.0.1:{proxy.port}",
            "--cacert", pki.path("cluster-ca.pem"), "-o", "/dev/null", "-w", "%{http_code}"]
    if body is not None:
        args += ["--data-binary", body, "-H", "Content-Type: text/plain"]
    r = subprocess.run(args + [f"https://localhost:{origin_port}/upload"], capture_output=True, text=True, timeout=60)
    return int(r.stdout or 0)


@pytest.fixture()
def world(egressguard_bin, workdir):
    console = ConsoleStore(egressguard_bin, workdir, "--approvals-required", "2").start()
    pki = Pki(workdir)
    origin = Origin(pki.good[1], pki.good[0])
    officer = ["--store", f"localhost:{console.store.port}", *console.certs.client_flags("officer")]
    source = os.environ["EGRESSGUARD_SOURCE_DIR"]
    cli(egressguard_bin, "rules", "push", os.path.join(source, "rules/default"), "--reason", "first pack", *officer)
    first = cli(egressguard_bin, "rules", "list", *officer).split()[0]
    # Four-eyes from the first activation on: a certificate officer proposes, a console officer approves.
    r = subprocess.run([egressguard_bin, "rules", "activate", first, "--mode", "enforce", "--reason", "start",
                        *officer], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "needs approval" in r.stderr, r.stderr
    status, body = console.session("olga", "officer").call("RuleAdmin/Approve", {"version": first})
    assert status == 200, body

    config = os.path.join(workdir, "proxy.yaml")
    with open(config, "w") as f:
        f.write("proxy:\n  workloads:\n    - workload: payments\n      cidrs: [127.0.0.1/32]\n"
                "    - workload: reporting\n      cidrs: [127.0.0.2/32]\n")
    app = console.certs.prefix["appliance"]
    proxy = StoreProxy(egressguard_bin, pki, f"localhost:{console.store.port}", os.path.join(workdir, "spool.db"),
                       "--config", config, "--store-cert", app + ".crt", "--store-key", app + ".key",
                       "--store-ca", console.certs.ca).start()
    proxy.wait_pack(first)
    blocked = [send(proxy, pki, origin.port, "127.0.0.1", CARD_BODY) for _ in range(3)]
    allowed = [send(proxy, pki, origin.port, "127.0.0.2", "quarterly totals, nothing personal\n") for _ in range(4)]
    assert blocked == [403] * 3 and allowed == [200] * 4, (blocked, allowed)
    proxy.wait_metric(lambda m: True)  # the admin listener answers
    auditor = ["--store", f"localhost:{console.store.port}", *console.certs.client_flags("auditor")]
    deadline = time.time() + 30
    while time.time() < deadline:
        rows = json.loads(cli(egressguard_bin, "verdicts", "stats", "--by", "action", "--json", *auditor)).get("rows", [])
        if sum(int(r.get("verdicts", 0)) for r in rows) >= 7:
            break
        time.sleep(0.2)
    browser = Browser(console)
    yield {"console": console, "proxy": proxy, "browser": browser, "officer": officer, "auditor": auditor,
           "first": first, "workdir": workdir}
    browser.quit()
    proxy.stop()
    origin.close()
    console.stop()


def test_officer_and_auditor_in_the_browser(world, egressguard_bin):
    console, proxy, b = world["console"], world["proxy"], world["browser"]
    d = b.driver

    # Overview: the totals the charts are drawn from are `verdicts stats`'s.
    b.sign_in("alice", "officer")
    b.page("overview")
    stats = json.loads(cli(egressguard_bin, "verdicts", "stats", "--by", "action", "--json", *world["auditor"]))
    total = sum(int(r.get("verdicts", 0)) for r in stats["rows"])
    blocked = sum(int(r.get("verdicts", 0)) for r in stats["rows"] if r["key"] == "BLOCK")
    assert total >= 7 and blocked == 3
    b.wait.until(EC.text_to_be_present_in_element((By.ID, "total-verdicts"), str(total)))
    assert d.find_element(By.ID, "total-verdicts").text == str(total)
    assert d.find_element(By.ID, "total-blocked").text == str(blocked)
    b.wait.until(lambda dr: dr.execute_script(
        "return ['chart-days','chart-categories','chart-hosts','chart-workloads']"
        ".every(id => window.Chart && Chart.getChart(id))"))
    days_total = d.execute_script(
        "return Chart.getChart('chart-days').data.datasets[0].data.reduce((a, b) => a + b, 0)")
    assert days_total == total
    assert d.execute_script("return Chart.getChart('chart-days').data.datasets[1].data"
                            ".reduce((a, b) => a + b, 0)") == blocked
    # Per hour over the last day: the traffic above was all sent within it.
    Select(d.find_element(By.ID, "time-scale")).select_by_value("hour")
    b.wait.until(lambda dr: dr.execute_script("return Chart.getChart('chart-days').data.labels.length") == 24)
    b.wait.until(lambda dr: dr.execute_script(
        "return Chart.getChart('chart-days').data.datasets[0].data.reduce((a, b) => a + b, 0)") == total)
    assert d.execute_script("return Chart.getChart('chart-days').data.datasets[1].data"
                            ".reduce((a, b) => a + b, 0)") == blocked
    assert "ok" in d.find_element(By.ID, "store-health").text
    assert world["first"] in d.find_element(By.ID, "active-pack").text
    b.shot("overview")

    # Verdicts: only the reporting workload, then one opened.
    b.page("verdicts")
    b.wait.until(lambda dr: dr.find_elements(By.CSS_SELECTOR, "#verdict-table tbody tr"))
    form = d.find_element(By.ID, "verdict-filter")
    form.find_element(By.NAME, "workload").send_keys("reporting")
    b.click(By.CSS_SELECTOR, "#verdict-filter button[type=submit]")
    b.wait.until(lambda dr: len(dr.find_elements(By.CSS_SELECTOR, "#verdict-table tbody tr")) == 4)
    for row in d.find_elements(By.CSS_SELECTOR, "#verdict-table tbody tr"):
        assert row.find_elements(By.TAG_NAME, "td")[4].text == "reporting"
    b.shot("verdicts")
    form = d.find_element(By.ID, "verdict-filter")
    form.find_element(By.NAME, "workload").clear()
    form.find_element(By.NAME, "workload").send_keys("payments")
    Select(form.find_element(By.NAME, "action")).select_by_value("BLOCK")
    b.click(By.CSS_SELECTOR, "#verdict-filter button[type=submit]")
    b.wait.until(lambda dr: len(dr.find_elements(By.CSS_SELECTOR, "#verdict-table tbody tr")) == 3)
    link = d.find_element(By.CSS_SELECTOR, "#verdict-table a.open-verdict")
    link.send_keys("\n")  # the keyboard opens it
    b.wait.until(lambda dr: dr.find_elements(By.CSS_SELECTOR, "#verdict-detail .evidence"))
    b.wait.until(EC.text_to_be_present_in_element((By.ID, "chain-mark"), "verified"))
    assert d.find_element(By.ID, "chain-mark").text.startswith("✔ verified")
    detail = d.find_element(By.ID, "verdict-detail").text
    assert "credit_card" in detail and "payments" in detail
    assert not any(raw in d.page_source for raw in RAW_CARDS)
    assert all(len(e.text) == 64 for e in d.find_elements(By.CSS_SELECTOR, "#verdict-detail .fingerprint"))
    b.shot("verdict-detail")

    # Rule packs: push a new version, activate alone (refused), approve as a second officer.
    active = json.loads(cli(egressguard_bin, "rules", "get", world["first"], "--json", *world["officer"]))
    pack = active["pack"]
    pack["version"] = "2.0-console"
    pack_file = os.path.join(world["workdir"], "pack-2.0-console.json")
    with open(pack_file, "w") as f:
        json.dump(pack, f)
    b.page("packs")
    b.wait.until(lambda dr: dr.find_elements(By.ID, "push-form"))
    push = d.find_element(By.ID, "push-form")
    push.find_element(By.NAME, "packfile").send_keys(pack_file)
    push.find_element(By.NAME, "reason").send_keys("console test pack")
    b.click(By.ID, "validate-button")
    b.wait.until(EC.text_to_be_present_in_element((By.ID, "pack-result"), "compiles"))
    b.click(By.ID, "push-button")
    b.wait.until(EC.text_to_be_present_in_element((By.ID, "pack-result"), "Pushed 2.0-console"))
    b.wait.until(lambda dr: dr.find_elements(By.CSS_SELECTOR, "#pack-table tr[data-version='2.0-console']"))
    act = d.find_element(By.ID, "activate-form")
    Select(act.find_element(By.NAME, "version")).select_by_value("2.0-console")
    act.find_element(By.NAME, "reason").send_keys("roll out")
    b.click(By.ID, "activate-button")
    b.wait.until(EC.text_to_be_present_in_element((By.ID, "pack-result"), "needs approval"))
    b.wait.until(lambda dr: dr.find_elements(By.CSS_SELECTOR, "#proposal-table tr[data-proposal='2.0-console']"))
    assert not d.find_elements(By.CSS_SELECTOR, ".approve-button")  # not for the proposer
    status, body = b.fetch_post("RuleAdmin/Approve", {"version": "2.0-console"})
    assert status == 403 and "your own" in body["message"], body
    b.shot("packs-proposed")

    b.sign_in("bob", "officer")
    b.page("packs")
    b.wait.until(lambda dr: dr.find_elements(By.CSS_SELECTOR, ".approve-button[data-version='2.0-console']"))
    b.click(By.CSS_SELECTOR, ".approve-button[data-version='2.0-console']")
    b.wait.until(lambda dr: "Approved: 2.0-console is active" in dr.find_element(By.ID, "main").text)
    # The page refreshes its tables after the approval: wait for that before using its forms.
    b.wait.until(lambda dr: not dr.find_elements(By.CSS_SELECTOR, "#proposal-table tr[data-proposal='2.0-console']"))
    proxy.wait_pack("2.0-console")
    b.shot("packs-approved")

    # Test the active pack against labelled samples chosen in the file dialog (files and
    # their sidecars, as `rules test` reads them): the per-file and per-occurrence tables.
    corpus = os.path.join(os.environ["EGRESSGUARD_SOURCE_DIR"], "tests/data/corpus")
    chosen = [os.path.join(corpus, n) for n in ("csv/uk_ni_5.csv", "csv/uk_ni_5.csv.expect",
                                                "negatives/uuids.txt", "negatives/uuids.txt.expect")]
    test = d.find_element(By.ID, "test-form")
    Select(test.find_element(By.NAME, "version")).select_by_value("2.0-console")
    test.find_element(By.NAME, "samples").send_keys("\n".join(chosen))
    b.click(By.ID, "test-button")
    b.wait.until(lambda dr: dr.find_elements(By.CSS_SELECTOR, "#test-per-occurrence tr[data-category='uk_nino']"))
    row = d.find_element(By.CSS_SELECTOR, "#test-per-occurrence tr[data-category='uk_nino']").text.split()
    assert row[:4] == ["uk_nino", "5", "0", "0"], row  # 5 located NINOs found, none extra, none missed
    assert "every category at or above" in d.find_element(By.ID, "test-result").text
    d.execute_script("document.getElementById('test-result').scrollIntoView()")
    b.shot("packs-tested")

    # The auditor: verdicts and audit, no push or approve controls, and the API refuses them.
    b.sign_in("ann", "auditor")
    b.page("packs")
    b.wait.until(lambda dr: dr.find_elements(By.ID, "pack-table"))
    for sel in ("#push-form", "#activate-form", ".approve-button", "#validate-button"):
        assert not d.find_elements(By.CSS_SELECTOR, sel), sel
    status, body = b.fetch_post("RuleAdmin/Push", {"pack": pack, "reason": "x"})
    assert status == 403 and body["code"] == "PERMISSION_DENIED"
    status, body = b.fetch_post("RuleAdmin/Approve", {"version": "2.0-console"})
    assert status == 403 and body["code"] == "PERMISSION_DENIED"
    b.page("verdicts")
    b.wait.until(lambda dr: dr.find_elements(By.CSS_SELECTOR, "#verdict-table tbody tr"))
    b.page("audit")
    b.wait.until(lambda dr: dr.find_elements(By.CSS_SELECTOR, "#audit-table tbody tr"))
    assert "console:bob" in d.find_element(By.ID, "audit-table").text
    b.click(By.ID, "verify-button")
    b.wait.until(EC.text_to_be_present_in_element((By.ID, "verify-result"), "Verified"))
    b.shot("audit")
    # An officer is not given the audit page, as the API does not give it the trail.
    b.sign_in("alice", "officer")
    assert not d.find_elements(By.CSS_SELECTOR, "#nav a[data-page=audit]")


def test_forged_session_and_cross_site_post_are_refused(world):
    console, b = world["console"], world["browser"]
    d = b.driver
    b.sign_in("alice", "officer")
    cookie = d.get_cookie(COOKIE)
    assert cookie and cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
    assert d.execute_script("return document.cookie") == ""  # script cannot read it
    # Forged: the role edited in the cookie.
    d.delete_all_cookies()
    d.add_cookie({"name": COOKIE, "value": cookie["value"].replace(":officer:", ":auditor:"), "path": "/",
                  "secure": True, "httpOnly": True, "sameSite": "Strict"})
    d.get(console.url + "/")
    b.wait.until(lambda dr: "Not signed in" in dr.find_element(By.ID, "main").text)
    b.shot("signed-out")

    # Cross-site: a page on another origin posts a form to the console.
    b.sign_in("alice", "officer")
    page = (f'<form id="f" method="POST" enctype="text/plain" action="{console.url}/api/v1/RuleAdmin/Push">'
            '<input name=\'{"pack":{"version":"evil"},"reason":"x","a":"\' value=\'"}\'></form>'
            '<script>document.getElementById("f").submit()</script>').encode()

    class Evil(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *a):
            pass

    # Threading: Chromium opens a spare connection it may never use, and a one-at-a-time
    # server blocks on reading it, so shutdown() would wait until Chromium drops it (~100 s).
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Evil)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        d.get(f"http://127.0.0.1:{server.server_port}/")
        b.wait.until(lambda dr: dr.current_url.startswith(console.url))
        text = d.find_element(By.TAG_NAME, "body").text
        assert "UNAUTHENTICATED" in text or "PERMISSION_DENIED" in text, text
    finally:
        server.shutdown()
    status, body = console.session("carl", "officer").call("RuleAdmin/List")
    assert status == 200 and all(p["version"] != "evil" for p in body["packs"])
