"""The options every command that reads or writes vectors shares, declared once.

`index`, `search`, `evaluate-retrieval`, `duplicates` and `serve` are decorated with
`@takes_index_settings`: Typer then sees the options below in place of the command's
`settings` parameter, and the command receives them as one `IndexSettings` (`index_settings`),
built once. A command keeps its own folder parameter, named `database`.

`search`, `duplicates` and `serve` are also decorated with `@takes_photo_filter`: the filter
options (`--taken-after`, `--taken-before`, `--camera`, `--under`) arrive as one `PhotoFilter`
(`retrieval.filters.photo_filter`) in their `photo_filter` parameter.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from foldervision.retrieval.backends import DEFAULT_BACKEND, available_backends
from foldervision.retrieval.filters import DATE_EXAMPLE, photo_filter
from foldervision.retrieval.settings import DEFAULT_MODEL, IndexSettings, parse_scales
from foldervision.retrieval.spec import DEFAULT_PRECISION, PRECISIONS
from foldervision.retrieval.stores import DEFAULT_STORE, StoreLocation

STORE_TOKEN_VARIABLE = "FOLDERVISION_MILVUS_TOKEN"
"""Read by the option parser only (as `--store-token`'s default); the program never writes it."""

IndexPathOption = Annotated[
    Path | None,
    typer.Option(
        "--index",
        help="Index file. Default: DATABASE/.foldervision/index.sqlite (kept beside the images).",
    ),
]
ModelOption = Annotated[
    str,
    typer.Option(
        "--model",
        help="mobilenetv2 (ImageNet features), efficientnet-lite2 or efficientnet-lite0 (ImageNet "
        "features, weights via `foldervision weights install --model NAME`), two or three of "
        "them side by side joined by + (mobilenetv2+efficientnet-lite0+efficientnet-lite2: "
        "better neighbours for the sum of their indexing times), a run folder of a "
        "trained classifier "
        "(searches with its 'features' layer, adapted to its domain), or a CLIP model that "
        "also searches by words: clip-vit-b32 (get it with `foldervision models pull "
        "clip-vit-b32`) or clip:FOLDER (a folder from scripts/export_clip.py); CLIP vectors "
        "get their own index file beside the default one.",
    ),
]
ImageSizeOption = Annotated[
    int | None,
    typer.Option(
        "--image-size",
        help="Input size in pixels for a pretrained model (default: its own, 224 for "
        "mobilenetv2, 260 for efficientnet-lite2).",
    ),
]
BackendOption = Annotated[
    str,
    typer.Option(
        "--backend",
        help=f"What runs the network: {', '.join(available_backends())} (keras for GPUs).",
    ),
]
PrecisionOption = Annotated[
    str,
    typer.Option(
        "--precision",
        help=f"{' or '.join(PRECISIONS)}; int8 is faster, its vectors differ a little (onnx only).",
    ),
]
DecodingOption = Annotated[
    str | None,
    typer.Option(
        "--decoding",
        help="scaled: large photos (phone photos, panoramas) are decoded at reduced scale, to "
        "no less than twice the network's input side (fast; same retrieval quality on 12-MP "
        "photos); full: every pixel is decoded first. Default: what the index was built "
        "with, else scaled.",
    ),
]
ScalesOption = Annotated[
    str | None,
    typer.Option(
        "--scales",
        metavar="S,S",
        help="The fractions of the network's input side it sees each photo at, the vectors "
        "averaged: 1 is one scale (fastest), 1,0.707 two (MobileNetV2's default: better "
        "neighbours for 1.2-1.35x the indexing time). Default: what the index was built with, "
        "else the model's own.",
    ),
]
AnnOption = Annotated[
    str | None,
    typer.Option(
        "--ann",
        help="Vector index: auto (exact below 50,000 images, approximate above: compact codes "
        "re-ranked with the stored vectors), exact, "
        "or approximate (even for a small folder, to check its quality). Remembered by the "
        "index; default auto. Milvus: exact (FLAT) or approximate (IVF_SQ8), fixed when its "
        "collection is made.",
    ),
]
RecallOption = Annotated[
    float | None,
    typer.Option(
        "--recall",
        metavar="R",
        help="Recall@4 the approximate index must reach, measured on the folder's own vectors "
        "whenever it is built (default 0.95); its smallest, cheapest setting that does is used, "
        "else every 8-bit code is scanned. Remembered by the index (faiss store).",
    ),
]
StoreOption = Annotated[
    str,
    typer.Option(
        "--store",
        help="Where the vectors live: faiss (in the index file), milvus (Milvus Lite beside the "
        "index), milvus:PATH.db (Milvus Lite there), milvus:http://HOST:19530\\[/DBNAME] (a Milvus "
        "server or cluster).",
    ),
]
StoreTokenOption = Annotated[
    str | None,
    typer.Option(
        "--store-token",
        envvar=STORE_TOKEN_VARIABLE,
        help="Milvus server credentials (USER:PASSWORD or an API key); default "
        f"${STORE_TOKEN_VARIABLE}.",
        show_envvar=False,
    ),
]
RebuildOption = Annotated[
    bool,
    typer.Option("--rebuild", help="Forget the stored vectors (e.g. after changing --model)."),
]
"""An action, not a setting: the commands that may rebuild declare it themselves."""
ExpandOption = Annotated[
    int,
    typer.Option(
        "--expand",
        metavar="N",
        help="Re-rank by query expansion: search again with the query averaged with its N "
        "nearest photos (weighted by similarity^3), e.g. --expand 2; distances are then from "
        "that expanded query. Raises mAP; P@4 hardly. 0: off (the default).",
    ),
]
DiffuseOption = Annotated[
    bool,
    typer.Option(
        "--diffuse",
        help="Re-rank by diffusion: the 200 nearest photos re-ordered by how closely they link "
        "to the query through each other (distances stay the query's, so they need not "
        "increase). Raises mAP on every labelled collection measured, P@4 a little. Off by "
        "default; not with --expand.",
    ),
]
CentreOption = Annotated[
    bool,
    typer.Option(
        "--centre",
        help="Re-rank by centring: the 200 nearest photos re-scored after the square root of "
        "each vector, less the collection's mean, so what all photos share counts less; "
        "distances are then the centred ones. Raised P@4 on 26 of 27 split halves of nine "
        "labelled collections and mAP on all; leave-one-out P@4 on 7 of 9. Off by default; one "
        "re-ranking at a time.",
    ),
]
WatchOption = Annotated[
    bool,
    typer.Option(
        "--watch",
        help="Keep the index current while running: photos added, changed, renamed, moved or "
        "deleted are indexed within seconds (files still being copied wait until complete).",
    ),
]


def index_settings(
    database: Path,
    *,
    index: Path | None,
    model: str,
    image_size: int | None,
    backend: str,
    precision: str,
    decoding: str | None,
    scales: str | None,
    ann: str | None,
    recall: float | None,
    store: str,
    store_token: str | None,
) -> IndexSettings:
    """The parsed options as one `IndexSettings`; `--store` is parsed here, once."""
    return IndexSettings(
        database,
        index_path=index,
        model=model,
        image_size=image_size,
        backend=backend,
        precision=precision,
        decoding=decoding,
        scales=parse_scales(scales),
        store_location=StoreLocation.parse(store, token=store_token, ann=ann, recall=recall),
    )


TakenAfterOption = Annotated[
    str | None,
    typer.Option(
        "--taken-after",
        metavar="DATE",
        help=f"Only photos taken on or after DATE ({DATE_EXAMPLE}), in the camera's local "
        "time: the EXIF date, else the file's modification time.",
    ),
]
TakenBeforeOption = Annotated[
    str | None,
    typer.Option(
        "--taken-before",
        metavar="DATE",
        help="Only photos taken before DATE, not on it: --taken-after 2023-06 --taken-before "
        "2023-09 is June to August.",
    ),
]
CameraOption = Annotated[
    str | None,
    typer.Option(
        "--camera",
        metavar="TEXT",
        help="Only photos whose camera make and model contain TEXT (any case): iphone, "
        "'canon eos'.",
    ),
]
UnderOption = Annotated[
    str | None,
    typer.Option(
        "--under",
        metavar="FOLDER",
        help="Only photos in FOLDER, a subfolder of the database (relative to it, or its path).",
    ),
]

_KEYWORD = inspect.Parameter.KEYWORD_ONLY
FILTER_OPTIONS = [
    inspect.Parameter("taken_after", _KEYWORD, annotation=TakenAfterOption, default=None),
    inspect.Parameter("taken_before", _KEYWORD, annotation=TakenBeforeOption, default=None),
    inspect.Parameter("camera", _KEYWORD, annotation=CameraOption, default=None),
    inspect.Parameter("under", _KEYWORD, annotation=UnderOption, default=None),
]
"""The parameters of `photo_filter` after the folder, as Typer is to see them."""
INDEX_OPTIONS = [
    inspect.Parameter("index", _KEYWORD, annotation=IndexPathOption, default=None),
    inspect.Parameter("model", _KEYWORD, annotation=ModelOption, default=DEFAULT_MODEL),
    inspect.Parameter("image_size", _KEYWORD, annotation=ImageSizeOption, default=None),
    inspect.Parameter("backend", _KEYWORD, annotation=BackendOption, default=DEFAULT_BACKEND),
    inspect.Parameter("precision", _KEYWORD, annotation=PrecisionOption, default=DEFAULT_PRECISION),
    inspect.Parameter("decoding", _KEYWORD, annotation=DecodingOption, default=None),
    inspect.Parameter("scales", _KEYWORD, annotation=ScalesOption, default=None),
    inspect.Parameter("ann", _KEYWORD, annotation=AnnOption, default=None),
    inspect.Parameter("recall", _KEYWORD, annotation=RecallOption, default=None),
    inspect.Parameter("store", _KEYWORD, annotation=StoreOption, default=DEFAULT_STORE),
    inspect.Parameter("store_token", _KEYWORD, annotation=StoreTokenOption, default=None),
]
"""The parameters of `index_settings` after the folder, as Typer is to see them."""


def takes_options(
    name: str, options: list[inspect.Parameter], build: Callable[..., Any]
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A decorator that lets Typer see `options` where a command has its parameter `name`.

    The wrapped command is called with `name=build(database, **those options)`; its other
    parameters pass through unchanged (those after `name` become keyword-only, as the options
    are: Typer passes every parameter by name). Decorators made here stack.
    """

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(command, eval_str=True)
        names = list(signature.parameters)
        where = names.index(name)
        before = [signature.parameters[other] for other in names[:where]]
        after = [signature.parameters[other].replace(kind=_KEYWORD) for other in names[where + 1 :]]

        @functools.wraps(command)
        def run(**arguments: Any) -> Any:
            values = {parameter.name: arguments.pop(parameter.name) for parameter in options}
            return command(**arguments, **{name: build(arguments["database"], **values)})

        run.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=[*before, *options, *after]
        )
        return run

    return decorate


takes_index_settings = takes_options("settings", INDEX_OPTIONS, index_settings)
"""INDEX_OPTIONS in place of the command's `settings`, which receives one `IndexSettings`."""
takes_photo_filter = takes_options("photo_filter", FILTER_OPTIONS, photo_filter)
"""FILTER_OPTIONS in place of the command's `photo_filter`, which receives one `PhotoFilter`."""
