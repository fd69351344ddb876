"""The options every command that reads or writes vectors shares, declared once.

`index`, `search`, `evaluate-retrieval`, `duplicates` and `serve` are decorated with
`@takes_index_settings`: Typer then sees the options below in place of the command's
`settings` parameter, and the command receives them as one `IndexSettings` (`index_settings`),
built once. A command keeps its own folder parameter, named `database`.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from foldervision.retrieval.backends import DEFAULT_BACKEND, available_backends
from foldervision.retrieval.settings import DEFAULT_MODEL, IndexSettings
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
        help="mobilenetv2 (ImageNet features), a run folder of a trained classifier "
        "(searches with its 'features' layer, adapted to its domain), or a CLIP model that "
        "also searches by words: clip-vit-b32 (get it with `foldervision models pull "
        "clip-vit-b32`) or clip:FOLDER (a folder from scripts/export_clip.py); CLIP vectors "
        "get their own index file beside the default one.",
    ),
]
ImageSizeOption = Annotated[
    int | None,
    typer.Option("--image-size", help="Input size in pixels for mobilenetv2 (default 224)."),
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
        help=f"{' or '.join(PRECISIONS)}; int8 is faster, its vectors differ a little (onnx "
        "only).",
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
AnnOption = Annotated[
    str | None,
    typer.Option(
        "--ann",
        help="Vector index: auto (exact below 50,000 images, approximate IVF-SQ8 above), exact, "
        "or approximate (even for a small folder, to check its quality). Remembered by the "
        "index; default auto. Milvus: exact (FLAT) or approximate (IVF_SQ8), fixed when its "
        "collection is made.",
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


def index_settings(
    database: Path,
    *,
    index: Path | None,
    model: str,
    image_size: int | None,
    backend: str,
    precision: str,
    decoding: str | None,
    ann: str | None,
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
        store_location=StoreLocation.parse(store, token=store_token, ann=ann),
    )


_KEYWORD = inspect.Parameter.KEYWORD_ONLY
INDEX_OPTIONS = [
    inspect.Parameter("index", _KEYWORD, annotation=IndexPathOption, default=None),
    inspect.Parameter("model", _KEYWORD, annotation=ModelOption, default=DEFAULT_MODEL),
    inspect.Parameter("image_size", _KEYWORD, annotation=ImageSizeOption, default=None),
    inspect.Parameter("backend", _KEYWORD, annotation=BackendOption, default=DEFAULT_BACKEND),
    inspect.Parameter(
        "precision", _KEYWORD, annotation=PrecisionOption, default=DEFAULT_PRECISION
    ),
    inspect.Parameter("decoding", _KEYWORD, annotation=DecodingOption, default=None),
    inspect.Parameter("ann", _KEYWORD, annotation=AnnOption, default=None),
    inspect.Parameter("store", _KEYWORD, annotation=StoreOption, default=DEFAULT_STORE),
    inspect.Parameter("store_token", _KEYWORD, annotation=StoreTokenOption, default=None),
]
"""The parameters of `index_settings` after the folder, as Typer is to see them."""


def takes_index_settings(command: Callable[..., Any]) -> Callable[..., Any]:
    """Let Typer see INDEX_OPTIONS where `command` has its `settings` parameter.

    The wrapped command is called with `settings=index_settings(database, **those options)`;
    its other parameters pass through unchanged (those after `settings` become keyword-only,
    as the options are: Typer passes every parameter by name).
    """
    signature = inspect.signature(command, eval_str=True)
    names = list(signature.parameters)
    where = names.index("settings")
    before = [signature.parameters[name] for name in names[:where]]
    after = [signature.parameters[name].replace(kind=_KEYWORD) for name in names[where + 1 :]]

    @functools.wraps(command)
    def run(**arguments: Any) -> Any:
        options = {parameter.name: arguments.pop(parameter.name) for parameter in INDEX_OPTIONS}
        return command(**arguments, settings=index_settings(arguments["database"], **options))

    run.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*before, *INDEX_OPTIONS, *after]
    )
    return run
