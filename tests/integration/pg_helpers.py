"""A real PostgreSQL server for integration tests: initdb into a temporary directory
(as the `postgres` user when run as root: the server refuses root), listening only on
a Unix socket in that directory; stop() shuts it down. Debian's `postgresql` package
provides the binaries (scripts/install-deps.sh installs it)."""
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import urllib.parse

import pytest

PORT = 5432  # only names the socket file in our own directory


def find_bindir():
    env = os.environ.get("EGRESSGUARD_PG_BINDIR")
    if env:
        return env if os.path.exists(os.path.join(env, "postgres")) else None
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    return os.path.dirname(found[-1]) if found else None


class PgServer:
    def __init__(self):
        self.bindir = find_bindir()
        assert self.bindir, "PostgreSQL server binaries not found (Debian package `postgresql`)"
        self.dir = tempfile.mkdtemp(prefix="egressguard-pg-")
        self.proc = None
        self.user = None
        if os.geteuid() == 0:
            self.user = pwd.getpwnam("postgres")
            os.chown(self.dir, self.user.pw_uid, self.user.pw_gid)

    def _demote(self):
        if self.user:
            os.setgid(self.user.pw_gid)
            os.setuid(self.user.pw_uid)

    def start(self):
        data = os.path.join(self.dir, "data")
        if not os.path.exists(data):
            subprocess.run([os.path.join(self.bindir, "initdb"), "-D", data, "-U", "postgres", "-A", "trust",
                            "-E", "UTF8", "--no-locale", "--no-sync"], check=True, capture_output=True,
                           preexec_fn=self._demote, timeout=120)
        log = open(os.path.join(self.dir, "postgres.log"), "a")
        self.proc = subprocess.Popen([os.path.join(self.bindir, "postgres"), "-D", data, "-k", self.dir, "-p",
                                      str(PORT), "-c", "listen_addresses=", "-c", "fsync=off", "-c",
                                      "max_connections=200"],
                                     stdout=log, stderr=log, preexec_fn=self._demote)
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.psql("postgres", "SELECT 1", check=False).returncode == 0:
                return self
            assert self.proc.poll() is None, open(os.path.join(self.dir, "postgres.log")).read()
            time.sleep(0.1)
        raise AssertionError("postgres did not answer in 30 s")

    def uri(self, database, **params):
        q = urllib.parse.urlencode(params)
        return (f"postgresql://postgres@{urllib.parse.quote(self.dir, safe='')}:{PORT}/{database}"
                + (f"?{q}" if q else ""))

    def psql(self, database, sql, check=True):
        return subprocess.run([os.path.join(self.bindir, "psql"), "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1",
                               "-h", self.dir, "-p", str(PORT), "-U", "postgres", "-d", database, "-c", sql],
                              capture_output=True, text=True, check=check, timeout=60)

    def create_database(self, name):
        self.psql("postgres", f"CREATE DATABASE {name}")
        return self.uri(name)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(2)  # SIGINT: fast shutdown
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def remove(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def skip_module_without_server():
    """Skips the calling test module, saying why, where the server binaries are missing."""
    if find_bindir() is None:
        pytest.skip("PostgreSQL server binaries not found (Debian package `postgresql`, installed by "
                    "scripts/install-deps.sh)", allow_module_level=True)


@pytest.fixture()
def pg():
    """A fresh server per test, removed after it (import this name into the test module)."""
    server = PgServer().start()
    yield server
    server.remove()
