"""`make setup` and its torch step, for real: the Makefile's own rules against a temporary venv.

The torch step is run alone (`make torch`, a few seconds) with tiny real wheels of a package named
`torch`, built here: three builds of 2.13.0 told apart by their local version label, like PyTorch's
`+cpu` and `+cu126`, and a dependency of theirs that a switch of build must leave alone. TORCH
carries pip options as a user passes them: `--no-index --find-links DIR`, and `--index-url` of a
PEP 503 index served on loopback (standing in for download.pytorch.org) or read from a file:// URL.
Each runs twice: under this machine's pip config (a global find-links folder holding a real
`2.13.0+cpu` wheel, extra file:// indexes, a constraint file) and under none. Every label here
sorts above `cpu`, so the machine's wheel never wins over the test's build.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import http.server
import os
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("setup")]

BUILD_A, BUILD_B, BUILD_C = "2.13.0+fakecpu", "2.13.0+fakecu126", "2.13.0+fakecu128"
DEP = "torchfakedep"


def write_wheel(folder: Path, name: str, version: str, files: dict[str, str],
                requires: tuple[str, ...] = ()) -> Path:
    """A pure-Python wheel, written as the zip it is: the files, METADATA, WHEEL and RECORD."""
    dist = f"{name}-{version}.dist-info"
    entries = dict(files)
    entries[f"{dist}/METADATA"] = (f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                                   + "".join(f"Requires-Dist: {r}\n" for r in requires))
    entries[f"{dist}/WHEEL"] = ("Wheel-Version: 1.0\nGenerator: tests/test_setup.py\n"
                                "Root-Is-Purelib: true\nTag: py3-none-any\n")
    record = []
    for path, text in entries.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}\n")
    entries[f"{dist}/RECORD"] = "".join(record) + f"{dist}/RECORD,,\n"
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, text in entries.items():
            zf.writestr(path, text)
    return wheel


def write_torch(folder: Path, version: str) -> None:
    write_wheel(folder, "torch", version, {"torch/__init__.py": f"__version__ = {version!r}\n"}, (DEP,))
    write_wheel(folder, DEP, "1.0", {f"{DEP}.py": ""})


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> Path:
    """a/ and b/: find-links folders of build A and B; simple/ and files/: a PEP 503 index of C."""
    root = tmp_path_factory.mktemp("wheels")
    write_torch(root / "a", BUILD_A)
    write_torch(root / "b", BUILD_B)
    write_torch(root / "files", BUILD_C)
    for name in ("torch", DEP):
        links = "".join(f'<a href="../../files/{w.name.replace("+", "%2B")}">{w.name}</a>\n'
                        for w in sorted((root / "files").glob(f"{name}-*.whl")))
        (root / "simple" / name).mkdir(parents=True)
        page = f"<!DOCTYPE html><html><body>\n{links}</body></html>\n"
        (root / "simple" / name / "index.html").write_text(page)
    return root


@pytest.fixture
def index_server(wheels):
    """The index folder served over HTTP on 127.0.0.1; yields its base URL."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=wheels))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def base_env(pip_config: str) -> dict[str, str]:
    """This environment, less what a calling make or the user's shell would pass to ours."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKEOVERRIDES", "MAKELEVEL", "TORCH", "VENV", "PYTHON")}
    if pip_config == "none":
        env = {k: v for k, v in env.items() if not k.startswith("PIP_")}
        env["PIP_CONFIG_FILE"] = os.devnull
        env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def make(*args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["make", "-C", str(REPO), *args], env=env, capture_output=True, text=True,
                            timeout=300)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


class Venv:
    def __init__(self, path: Path, env: dict[str, str]):
        self.path, self.env = path, env

    def torch(self, *torch: str, check: bool = True) -> subprocess.CompletedProcess:
        """`make torch` with TORCH=torch[0] if given, else without TORCH."""
        args = [f"VENV={self.path}"] + [f"TORCH={t}" for t in torch]
        return make(*args, "torch", env=self.env, check=check)

    def torch_version(self) -> str:
        code = "import importlib.metadata as m, torch; print(torch.__version__, m.version('torch'))"
        out = subprocess.run([str(self.path / "bin" / "python"), "-c", code], env=self.env,
                             capture_output=True, text=True, check=True).stdout.split()
        assert out[0] == out[1], out
        return out[0]

    def site(self) -> Path:
        return next((self.path / "lib").glob("python3*/site-packages"))


@pytest.fixture(scope="module", params=["machine", "none"], ids=["machine-pip-config", "no-pip-config"])
def venv(request, tmp_path_factory) -> Venv:
    """A venv the Makefile made with pip in it; created with PIP_NO_INDEX so its pip stays offline."""
    env = base_env(request.param)
    path = tmp_path_factory.mktemp(f"venv-{request.param}") / "venv"
    make(f"VENV={path}", f"PYTHON={sys.executable}", f"{path}/bin/python", env={**env, "PIP_NO_INDEX": "1"})
    assert (path / "bin" / "pip").exists()
    return Venv(path, env)


def test_torch_carries_pip_options_and_a_new_torch_replaces_the_build(venv, wheels):
    torch_a = f"torch==2.13.0 --no-index --find-links {wheels / 'a'}"
    out = venv.torch(torch_a).stdout
    assert f"torch: pip install {torch_a}" in out
    assert venv.torch_version() == BUILD_A
    assert (venv.path / ".torch").read_text() == torch_a + "\n"
    assert (venv.path / ".torch-pin").read_text() == f"torch=={BUILD_A}\n"

    def mtimes() -> list[int]:
        files = (venv.site() / "torch" / "__init__.py", venv.site() / f"{DEP}.py", venv.path / ".torch",
                 venv.path / ".torch-pin")
        return [f.stat().st_mtime_ns for f in files]

    before = mtimes()
    for again in ((torch_a,), ()):  # the same TORCH, then none: the venv keeps its choice
        out = venv.torch(*again).stdout
        assert "torch:" not in out and "pip" not in out, out
        assert mtimes() == before
    assert venv.torch_version() == BUILD_A

    # `torch==2.13.0` is satisfied by 2.13.0+fakecpu: the new TORCH must replace the build anyway, and
    # leave torch's dependency as it was.
    out = venv.torch(f"torch==2.13.0 --no-index --find-links {wheels / 'b'}").stdout
    assert f"torch: replacing {BUILD_A}" in out
    assert venv.torch_version() == BUILD_B
    after = mtimes()
    assert after[0] != before[0] and after[1] == before[1]
    assert (venv.path / ".torch-pin").read_text() == f"torch=={BUILD_B}\n"


def test_torch_from_an_index_url(venv, wheels, index_server):
    """--index-url of a PEP 503 simple index, over HTTP as download.pytorch.org, then as a file:// URL."""
    venv.torch(f"torch==2.13.0 --index-url {index_server}/simple/")
    assert venv.torch_version() == BUILD_C
    # The build from HTTP is uninstalled first: only the file:// index can bring it back.
    out = venv.torch(f"torch==2.13.0 --index-url {(wheels / 'simple').as_uri()}").stdout
    assert f"torch: replacing {BUILD_C}" in out
    assert venv.torch_version() == BUILD_C


def fake_python(tmp_path: Path, name: str, module: str, text: str) -> Path:
    """A real Python run with `module` (sitecustomize or a stand-in for a stdlib one) put first."""
    lib = tmp_path / f"{name}-lib"
    lib.mkdir()
    (lib / f"{module}.py").write_text(text)
    script = tmp_path / name
    script.write_text(f'#!/bin/sh\nPYTHONPATH="{lib}" exec "{sys.executable}" "$@"\n')
    script.chmod(0o755)
    return script


def test_setup_refuses_python_older_than_3_10(tmp_path):
    python = fake_python(tmp_path, "python3.9", "sitecustomize",
                         "import sys\nsys.version_info = (3, 9, 18, 'final', 0)\n")
    result = make(f"VENV={tmp_path / 'venv'}", f"PYTHON={python}", "setup", env=base_env("machine"),
                  check=False)
    assert result.returncode != 0
    assert "is Python 3.9; webtext needs Python >= 3.10" in result.stderr
    assert not (tmp_path / "venv").exists()


def test_setup_names_the_venv_package_when_ensurepip_is_missing(tmp_path):
    # As on Debian and Ubuntu without python3.X-venv: no ensurepip module.
    python = fake_python(tmp_path, "python3", "ensurepip",
                         "raise ModuleNotFoundError(\"No module named 'ensurepip'\")\n")
    result = make(f"VENV={tmp_path / 'venv'}", f"PYTHON={python}", "setup", env=base_env("machine"),
                  check=False)
    assert result.returncode != 0
    version = "{}.{}".format(*sys.version_info[:2])
    assert "cannot create a virtual environment" in result.stderr
    assert f"apt-get install python{version}-venv" in result.stderr
    assert not (tmp_path / "venv").exists()
