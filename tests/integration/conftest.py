"""Shared fixtures for integration tests: they run the real `egressguard` binary."""
import os
import shutil
import subprocess
import tempfile

import pytest


@pytest.fixture(scope="session")
def egressguard_bin():
    path = os.environ.get("EGRESSGUARD_BIN")
    if not path or not os.access(path, os.X_OK):
        pytest.fail("EGRESSGUARD_BIN is not set to the built binary; run through ctest")
    return path


@pytest.fixture()
def workdir():
    d = tempfile.mkdtemp(prefix="egressguard-it-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def run(binary, *args, input=None, timeout=60):
    """Runs the binary and returns the CompletedProcess (text mode)."""
    return subprocess.run([binary, *args], input=input, capture_output=True, text=True, timeout=timeout)
