"""`foldervision train | evaluate | predict | compare | export`: classifiers from folders."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from foldervision.cli.app import app, console, shown_path
from foldervision.models import available_models
from foldervision.recipes import recipe_names
from foldervision.runs import DEFAULT_MISTAKES

if TYPE_CHECKING:
    from foldervision.images import SkippedFile


@app.command()
def train(
    data: Path = typer.Argument(..., help="Folder with one subfolder of images per class."),
    model: str = typer.Option(
        None,
        "--model",
        help=f"One of: {', '.join(available_models())}. Default: the recipe's model "
        "(lenet for small grey images, mobilenetv2 for photos).",
    ),
    recipe: str = typer.Option(
        None,
        "--recipe",
        help=f"One of: {', '.join(recipe_names())}. Default: chosen from the data "
        "(image size and colour); explicit options still win over it.",
    ),
    out: Path = typer.Option(..., "--out", help="Run folder to write (refuses to overwrite)."),
    epochs: int = typer.Option(None, "--epochs", help="Epochs (of the fine-tuning phase)."),
    head_epochs: int = typer.Option(
        None,
        "--head-epochs",
        help="Epochs of head-only training by Adam (pretrained models; the photo recipe "
        "otherwise fits the head as a linear probe).",
    ),
    val_split: float = typer.Option(0.2, "--val-split", help="Fraction held out for validation."),
    seed: int = typer.Option(42, "--seed", help="Seed for the split, shuffling and augmentation."),
    image_size: int = typer.Option(None, "--image-size", help="Input side in pixels."),
    batch_size: int = typer.Option(None, "--batch-size"),
    learning_rate: float = typer.Option(None, "--learning-rate", help="Of the last phase."),
    weights: str = typer.Option(
        None,
        "--weights",
        help="Pretrained weights: auto (offline package/cache), a .weights.h5/.pth file, "
        "keras-imagenet (download), none.",
    ),
    unfreeze: str = typer.Option(
        None,
        "--unfreeze",
        help="Fine-tuning phase: number of top backbone blocks to train, or all.",
    ),
    augment: bool = typer.Option(True, "--augment/--no-augment", help="Data augmentation."),
    flip: bool = typer.Option(
        None, "--flip/--no-flip", help="Horizontal flips (default: the recipe's; on for photos)."
    ),
    class_balance: str = typer.Option(
        "auto",
        "--class-balance",
        help="auto: weight the loss by class when the largest class has over 3x the images of "
        "the smallest; weights: always; none: never.",
    ),
    ensemble: bool = typer.Option(
        None,
        "--ensemble/--no-ensemble",
        help="Average the trained model's probabilities with a linear probe's on frozen "
        "MobileNetV2 + EfficientNet-Lite0 + Lite2 vectors (default: on with the photo recipe "
        "when their weights are installed; predictions then cost about 4 networks).",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing run folder."),
    test: Path = typer.Option(
        None,
        "--test",
        exists=True,
        file_okay=False,
        help="Labelled folder to evaluate on once trained (recorded for `compare`).",
    ),
) -> None:
    """Train a classifier; writes model.keras, metrics.json, split.json, plots and report.md."""
    from foldervision.training import TrainingConfig, resolve_settings
    from foldervision.training import train as train_model

    config = TrainingConfig(
        data=data,
        out=out,
        model=model,
        recipe=recipe,
        epochs=epochs,
        head_epochs=head_epochs,
        val_split=val_split,
        seed=seed,
        image_size=image_size,
        batch_size=batch_size,
        learning_rate=learning_rate,
        weights=weights,
        unfreeze=unfreeze,
        augment=augment,
        flip=flip,
        overwrite=overwrite,
        class_balance=class_balance,
        ensemble=ensemble,
    )
    settings = resolve_settings(config)
    print(settings.recipe_line, file=sys.stderr)
    metrics = train_model(settings)
    _warn_unreadable(metrics.skipped_files)
    balanced = ""
    if metrics.class_weights is not None and metrics.val_balanced_accuracy is not None:
        balanced = f", balanced accuracy {100 * metrics.val_balanced_accuracy:.2f}%"
    console.print(
        f"{metrics.model}: validation accuracy {100 * metrics.val_accuracy:.2f}%{balanced} "
        f"({metrics.val_size} images, best epoch {metrics.best_epoch}/{metrics.epochs}, "
        f"{metrics.train_seconds:.1f} s); skipped {len(metrics.skipped_files)} file(s)"
    )
    if test is not None:
        _report_test_accuracy(out, test)
    print(out)


def _warn_unreadable(skipped: list[SkippedFile]) -> None:
    """The files training left out, and why, before the results that leave them out."""
    if not skipped:
        return
    print(f"warning: skipped {len(skipped)} file(s) that could not be read:", file=sys.stderr)
    for item in skipped:
        print(f"  {item.reason}", file=sys.stderr)


def _report_test_accuracy(run: Path, folder: Path) -> None:
    """One line on held-out data, the same evaluation (and record) as `foldervision evaluate`,
    run by the Keras this process already holds (an ONNX export would cost more than it saves)."""
    from foldervision.inference import evaluate_folder

    result = evaluate_folder(run, folder, use_onnx=False)
    console.print(
        f"{result['model']}: test accuracy {100 * result['accuracy']:.2f}% on "
        f"{result['size']} images ({folder})"
    )
    _warn_skipped(result["skipped_files"])


ClipModelOption = typer.Option(
    None,
    "--model",
    help="The CLIP model of --labels and --zero-shot: clip-vit-b32 (default; `foldervision "
    "models pull clip-vit-b32`) or clip:FOLDER.",
)


@app.command()
def evaluate(
    run: Path | None = typer.Argument(
        None, help="Run folder (or .keras file) from `foldervision train`."
    ),
    data: Path | None = typer.Argument(None, help="Labelled folder: one subfolder per class."),
    confusion_matrix: Path = typer.Option(
        None,
        "--confusion-matrix",
        help="Write the confusion matrix PNG here (default: into the run folder's evaluations/).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    zero_shot: Path | None = typer.Option(
        None,
        "--zero-shot",
        metavar="LABELLED_FOLDER",
        help="Evaluate a CLIP model's zero-shot labels instead of a run: the subfolder names "
        "are the labels (prompt 'a photo of a {label}.'). Give no RUN and DATA.",
    ),
    model: str | None = ClipModelOption,
    mistakes: int = typer.Option(
        DEFAULT_MISTAKES,
        "--mistakes",
        help="Draw the N most confident mistakes on a contact sheet (0: none).",
    ),
    mistakes_sheet: Path = typer.Option(
        None,
        "--mistakes-sheet",
        help="Write the mistakes PNG here (default: into the run folder's evaluations/).",
    ),
) -> None:
    """Accuracy, balanced accuracy, macro F1, per-class figures and the confusion matrix.

    Results go to stdout: an accuracy line, then tab-separated per-class and confusion-matrix
    tables (or one JSON object with --json). The confusion matrix is also drawn as a PNG, as
    training does for validation, and the most confident mistakes as a contact sheet.
    """
    if mistakes < 0:
        raise ValueError(f"--mistakes must be 0 or more (got {mistakes}).")
    result = evaluation_of(run, data, zero_shot, model, confusion_matrix, mistakes, mistakes_sheet)
    if as_json:
        print(json.dumps(result))
    else:
        print(evaluation_text(result))
    if result["confusion_matrix_plot"]:
        plot = shown_path(result["confusion_matrix_plot"])
        console.print(f"confusion matrix: {plot}", markup=False)
    if result["mistakes_sheet"]:
        sheet = shown_path(result["mistakes_sheet"])
        console.print(f"mistakes ({len(result['mistakes'])}): {sheet}", markup=False)
    _warn_skipped(result["skipped_files"])


def evaluation_of(
    run: Path | None,
    data: Path | None,
    zero_shot: Path | None,
    model: str | None,
    confusion_matrix: Path | None,
    mistakes: int = DEFAULT_MISTAKES,
    mistakes_sheet: Path | None = None,
) -> dict:
    """A trained run's evaluation on DATA, or a CLIP model's zero-shot one (same figures)."""
    if zero_shot is not None:
        from foldervision.clip.zero_shot import evaluate_zero_shot

        if run is not None or data is not None:
            raise ValueError("--zero-shot takes the labelled folder; leave out RUN and DATA.")
        return evaluate_zero_shot(
            clip_model(model), zero_shot, confusion_matrix, mistakes, mistakes_sheet
        )
    from foldervision.inference import evaluate_folder

    if run is None or data is None:
        raise ValueError("give a RUN folder and a labelled DATA folder (or --zero-shot DATA).")
    return evaluate_folder(
        run,
        data,
        confusion_matrix_plot=confusion_matrix,
        mistakes=mistakes,
        mistakes_sheet=mistakes_sheet,
    )


def evaluation_text(result: dict) -> str:
    """`evaluate`'s plain output: accuracy, per-class figures, matrix; tab-separated tables."""
    lines = [
        f"accuracy {100 * result['accuracy']:.2f}% on {result['size']} images "
        f"({result['ms_per_image']:.2f} ms/image), loss {result['loss']:.4f}",
        f"balanced accuracy {100 * result['balanced_accuracy']:.2f}% (mean per-class recall), "
        f"macro F1 {result['macro_f1']:.4f}",
        "",
        "class\tprecision\trecall\tf1\tsupport",
    ]
    for name, figures in result["per_class"].items():
        lines.append(
            f"{name}\t{figures['precision']:.4f}\t{figures['recall']:.4f}\t"
            f"{figures['f1']:.4f}\t{figures['support']}"
        )
    names = list(result["per_class"])
    lines += ["", "confusion matrix (rows: true, columns: predicted)", "\t".join(["", *names])]
    for name, row in zip(names, result["confusion_matrix"]):
        lines.append("\t".join([name, *map(str, row)]))
    return "\n".join(lines)


@app.command()
def predict(
    run: Path = typer.Argument(
        ...,
        help="Run folder (or .keras file) from `foldervision train`; with --labels, the first "
        "image file or folder.",
    ),
    images: list[Path] | None = typer.Argument(None, help="Image files or folders."),
    top: int = typer.Option(
        3, "--top", help="Rank the N most likely classes (fewer if the model has fewer)."
    ),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per image, per line."),
    labels: str | None = typer.Option(
        None,
        "--labels",
        help="Label with a CLIP model instead of a run: comma-separated labels, e.g. "
        "'daisy,tulip,sunflower' (prompt 'a photo of a {label}.'); then give only images.",
    ),
    model: str | None = ClipModelOption,
    explain: Path | None = typer.Option(
        None,
        "--explain",
        metavar="OUT_DIR",
        help="Also write, per image, OUT_DIR/NAME_gradcam.png: the image with a heatmap "
        "(LayerCAM, Grad-CAM's element-wise form) of the predicted class over it (a trained "
        "run only).",
    ),
) -> None:
    """Label, confidence and the top classes for each image.

    One line per image: PATH, LABEL, CONFIDENCE and the top classes as
    "label (0.9300), other (0.0500), ...", separated by tabs. --json prints every class's
    probability and a "top" list instead (and "explanation", the heatmap file, with --explain).
    """
    explained: dict[str, str] = {}
    if labels is not None:
        from foldervision.clip.zero_shot import parse_labels, predict_zero_shot

        if explain is not None:
            raise ValueError("--explain needs a trained run; CLIP's --labels cannot be explained.")
        files = [run, *(images or [])]
        classes = parse_labels(labels)
        predictions, skipped = predict_zero_shot(clip_model(model), classes, files, top)
    else:
        from foldervision.inference import predict_files

        if not images:
            raise ValueError(f"{run}: give the image files or folders to label after the run.")
        predictions, skipped = predict_files(run, images, top=top)
        if explain is not None:
            from foldervision.explain import explain_files

            paths = [Path(prediction["path"]) for prediction in predictions]
            explained = explain_files(run, paths, explain)
    for prediction in predictions:
        if prediction["path"] in explained:
            prediction["explanation"] = explained[prediction["path"]]
        if as_json:
            print(json.dumps(prediction, ensure_ascii=False))
        else:
            print(
                f"{prediction['path']}\t{prediction['label']}\t{prediction['confidence']:.4f}\t"
                + format_top(prediction["top"])
            )
    if explained:
        console.print(f"Heatmaps: {len(explained)} in {shown_path(explain)}", markup=False)
    _warn_skipped([item.to_dict() for item in skipped])
    if not predictions:
        raise typer.Exit(1)


def clip_model(model: str | None) -> str:
    from foldervision.clip.models import DEFAULT_CLIP_MODEL

    return model or DEFAULT_CLIP_MODEL


def format_top(top: list[dict[str, float | str]]) -> str:
    """`label (0.9300), other (0.0500)`: readable, and one tab-free field for `cut -f4`."""
    return ", ".join(f"{item['label']} ({item['probability']:.4f})" for item in top)


@app.command()
def compare(
    runs: list[Path] = typer.Argument(..., help="Run folders to compare."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """One table: validation and test accuracy, parameters, training time, ms per image."""
    from foldervision.inference import run_summary

    rows = []
    for run in runs:
        summary = run_summary(run)
        metrics = summary.metrics
        test = summary.test
        rows.append(
            {
                "run": str(run),
                "model": metrics.model + (" + probe ensemble" if metrics.ensemble else ""),
                "image_size": metrics.image_size,
                "val_accuracy": metrics.val_accuracy,
                "test_accuracy": test["accuracy"] if test else None,
                "test_size": test["size"] if test else None,
                "parameters": metrics.parameters,
                "train_seconds": metrics.train_seconds,
                "ms_per_image": test["ms_per_image"] if test else None,
            }
        )
    if as_json:
        for row in rows:
            print(json.dumps(row))
        return
    print("| run | model | input | val acc | test acc | params | train time | ms/img |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        test = (
            f"{100 * row['test_accuracy']:.2f}% (n={row['test_size']})"
            if row["test_accuracy"] is not None
            else "not evaluated"
        )
        ms = f"{row['ms_per_image']:.3f}" if row["ms_per_image"] is not None else "-"
        print(
            f"| {row['run']} | {row['model']} | {row['image_size']} px | "
            f"{100 * row['val_accuracy']:.2f}% | {test} | {row['parameters']:,} | "
            f"{row['train_seconds']:.0f} s | {ms} |"
        )
    if any(row["test_accuracy"] is None for row in rows):
        console.print("note: run `foldervision evaluate RUN TEST_FOLDER` to fill in test accuracy.")


def _warn_skipped(skipped: list[dict[str, str]]) -> None:
    if skipped:
        console.print(f"warning: skipped {len(skipped)} file(s):")
        for item in skipped:
            console.print(f"  {item['reason']}", markup=False)


@app.command()
def export(
    run: Path = typer.Argument(..., help="Run folder from `foldervision train`."),
    export_format: str = typer.Option("tflite", "--format", help="tflite, onnx or saved_model."),
    out: Path = typer.Option(None, "--out", help="Export folder (default: RUN/export)."),
    check: int = typer.Option(
        256, "--check", help="Compare top-1 with Keras on up to N validation images (0: skip)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing export."),
) -> None:
    """Export for deployment; the model takes raw [0, 255] pixels, classes in labels.txt."""
    from foldervision.models.export import export_classifier

    target = export_classifier(run, export_format, out, overwrite)
    if check:
        from foldervision.inference import check_export

        agreement, count = check_export(run, target, limit=check)
        console.print(
            f"top-1 agreement with the Keras model: {100 * agreement:.2f}% on {count} "
            "validation images"
        )
    print(target)
