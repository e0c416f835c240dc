"""Helpers for the web console tests: a store with its console on, sign-in through the
real `egressguard console login` link, and JSON calls with the session cookie and the
CSRF token as the pages send them."""
import http.client
import json
import os
import re
import ssl
import subprocess

from store_helpers import Certs, StoreProcess, free_port

COOKIE = "__Host-egressguard_session"


class ConsoleStore:
    """`egressguard store` with mTLS on the gRPC port and the console on another."""

    def __init__(self, binary, workdir, *extra):
        self.binary = binary
        self.certs = Certs(binary, workdir)
        self.db = os.path.join(workdir, "store.db")
        self.console_port = free_port()
        self.store = StoreProcess(binary, self.db, free_port(),
                                  [*self.certs.store_flags(), "--console-listen", f"127.0.0.1:{self.console_port}",
                                   *extra])

    def start(self):
        self.store.start()
        return self

    def stop(self):
        self.store.stop()

    @property
    def address(self):
        return self.store.address

    @property
    def url(self):
        return f"https://127.0.0.1:{self.console_port}"

    def login_url(self, user, role):
        r = subprocess.run([self.binary, "console", "login", "--db", self.db, "--user", user, "--role", role,
                            "--url", self.url], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return r.stdout.strip()

    def tls(self):
        return ssl.create_default_context(cafile=self.certs.ca)

    def raw(self, method, path, body=None, headers=None):
        """One request on a fresh connection: (status, headers dict (lower-case), body bytes)."""
        conn = http.client.HTTPSConnection("127.0.0.1", self.console_port, context=self.tls(), timeout=60)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def session(self, user, role):
        url = self.login_url(user, role)
        status, headers, _ = self.raw("GET", url[len(self.url):])
        assert status == 303, (status, headers)
        cookie = re.match(rf"{COOKIE}=([^;]+);", headers["set-cookie"]).group(1)
        return Session(self, cookie)


class Session:
    def __init__(self, console, cookie):
        self.console, self.cookie = console, cookie
        status, _, body = console.raw("GET", "/api/v1/session", headers={"Cookie": f"{COOKIE}={cookie}"})
        assert status == 200, body
        self.info = json.loads(body)
        self.csrf = self.info["csrf_token"]

    def headers(self, **extra):
        h = {"Cookie": f"{COOKIE}={self.cookie}", "X-CSRF-Token": self.csrf, "Content-Type": "application/json",
             "Origin": self.console.url.replace("https://", "https://"), "Host": f"127.0.0.1:{self.console.console_port}"}
        h.update(extra)
        return h

    def call(self, method, request=None, **headers):
        """POST /api/v1/<Service>/<Method>: (HTTP status, parsed JSON)."""
        body = json.dumps(request or {})
        status, _, out = self.console.raw("POST", f"/api/v1/{method}", body, self.headers(**headers))
        return status, json.loads(out)
