"""The "onnx" backend: the Keras embedding model exported once to ONNX and run by ONNX Runtime.

The file is cached under the embedder spec's fingerprint
(`<cache>/embedders/<fingerprint>-v2.onnx`), so a later process that finds it never imports
TensorFlow: a single search starts in well under a second. Exporting (the first run for a
spec) builds the Keras model and does import it.

INT8 (`--precision int8`) is the fp32 file statically quantized (QDQ, per-channel weights),
calibrated on a fixed set of photos (`calibration_pixels`), so that the same spec gives the
same vectors on every machine (with the same onnxruntime) whatever folder was indexed first.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from foldervision.cache import cached_onnx_export, cached_onnx_path
from foldervision.errors import FoldervisionError
from foldervision.onnx_runtime import load_cached_session, open_session, parallel_forward

if TYPE_CHECKING:
    from foldervision.retrieval.backends import Forward
    from foldervision.retrieval.spec import EmbedderSpec

EXPORT_FOLDER = "embedders"
EXPORT_FORMAT = 2
"""Bumped when the export or quantization recipe changes, so stale cached files are not reused."""


NETWORK_OPS = frozenset({"Conv", "Clip", "Relu", "MatMul", "Gemm"})
"""Ops of the network proper; what follows the last of them (pooling, L2 norm) stays float."""

CALIBRATION_PERCENTILE = 99.9
"""Activation ranges cover 99.9% of calibration values: mean cosine to fp32 on 40 flowers5 photos
was 0.973 (min 0.946), against 0.926 (min 0.866) with plain min/max ranges."""

CALIBRATION_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera", "cat")
"""scikit-image's bundled photographs (no download): varied, real, identical on every machine."""


def exported_model_path(spec: EmbedderSpec) -> Path:
    return cached_onnx_path(EXPORT_FOLDER, spec.fingerprint(), EXPORT_FORMAT)


def ensure_exported(spec: EmbedderSpec, build_model: Callable[[], Any]) -> Path:
    """The spec's ONNX file, exported (and for INT8 quantized) on first use, written atomically."""

    def export(path: Path) -> None:
        if spec.precision == "int8":
            float_model = ensure_exported(replace(spec, precision="fp32"), build_model)
            quantize_embedding_model(float_model, path, spec)
        else:
            from foldervision.models.export import export_model_file

            export_model_file(build_model(), "onnx", path)

    return cached_onnx_export(EXPORT_FOLDER, spec.fingerprint(), EXPORT_FORMAT, export)


def quantize_embedding_model(float_model: Path, path: Path, spec: EmbedderSpec) -> None:
    """Static INT8 quantization (QDQ, per-channel weights) calibrated on `calibration_pixels`."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pixels = calibration_pixels(spec).astype(np.float32)
    input_name = _input_name(open_session(float_model))

    class Calibration(CalibrationDataReader):
        def __init__(self) -> None:
            self._feeds: Iterator[dict[str, np.ndarray]] = iter(
                {input_name: pixels[i : i + 1]} for i in range(len(pixels))
            )

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._feeds, None)

    scratch = Path(tempfile.mkdtemp(prefix="foldervision-quantize-"))
    try:
        prepared = scratch / "prepared.onnx"
        quant_pre_process(str(float_model), str(prepared), skip_symbolic_shape=True)
        # The calibrator prints its progress; stdout is for results only. ONNX Runtime would
        # warn on each calibration photo that the resize is 158 px, not the 157 the shape
        # inference computed from its scale factor (`_drop_inferred_shapes`).
        with contextlib.redirect_stdout(io.StringIO()), _runtime_errors_only():
            quantize_static(
                str(prepared),
                str(path),
                Calibration(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=float_nodes(prepared),
                calibrate_method=CalibrationMethod.Percentile,
                extra_options={"CalibPercentile": CALIBRATION_PERCENTILE},
            )
        _drop_inferred_shapes(path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def float_nodes(model_path: Path) -> list[str]:
    """Nodes with no network layer before them, or none after them, kept in float.

    Before: the preprocessing on raw pixels (scale and shift; at a second scale, the resize
    too). Quantized, it ran as QLinearMul and QLinearAdd, which took over half of the INT8
    model's time in ONNX Runtime's profiler; in float it costs next to nothing. After: GeM and
    the L2 norm lose too much in 8 bits (the vectors would not even be unit length). Judged
    by the graph, not by position: with two scales, one scale's pooling comes before the
    other's network in topological order.
    """
    import onnx

    nodes = list(onnx.load(str(model_path)).graph.node)  # in topological order
    producer = {output: node.name for node in nodes for output in node.output}
    is_network = {node.name: node.op_type in NETWORK_OPS for node in nodes}
    network_before: dict[str, bool] = {}
    for node in nodes:
        upstream = [producer[name] for name in node.input if name in producer]
        network_before[node.name] = any(is_network[up] or network_before[up] for up in upstream)
    network_after: dict[str, bool] = {node.name: False for node in nodes}
    for node in reversed(nodes):
        for name in node.input:
            if name in producer:
                up = producer[name]
                network_after[up] |= is_network[node.name] or network_after[node.name]
    return [
        node.name
        for node in nodes
        if not is_network[node.name]
        and not (network_before[node.name] and network_after[node.name])
    ]


@contextlib.contextmanager
def _runtime_errors_only() -> Iterator[None]:
    import onnxruntime

    onnxruntime.set_default_logger_severity(3)
    try:
        yield
    finally:
        onnxruntime.set_default_logger_severity(2)  # ONNX Runtime's default: warnings


def _drop_inferred_shapes(path: Path) -> None:
    """Remove the intermediate shapes the quantizer's shape inference wrote: it sizes a resize
    by its scale factor (157 px for 224 x 0.7054), and ONNX Runtime would warn on every run
    that the 158 px it computes differs."""
    import onnx

    model = onnx.load(str(path))
    del model.graph.value_info[:]
    onnx.save(model, str(path))


def calibration_pixels(spec: EmbedderSpec) -> np.ndarray:
    """Each bundled photo whole, centre-cropped and mirrored, decoded by the project's loader."""
    try:
        import skimage.data
    except ImportError as error:
        raise FoldervisionError(
            "--precision int8 calibrates on scikit-image's bundled photos; install them "
            "(pip install 'foldervision[int8]') or use --precision fp32."
        ) from error
    from PIL import Image

    from foldervision.images import decode_image_bytes

    variants = []
    for name in CALIBRATION_PHOTOS:
        photo = np.asarray(getattr(skimage.data, name)())
        height, width = photo.shape[:2]
        crop = photo[height // 4 : 3 * height // 4, width // 4 : 3 * width // 4]
        variants += [photo, crop, photo[:, ::-1]]
    pixels = []
    for number, variant in enumerate(variants):
        encoded = _png_bytes(Image.fromarray(np.ascontiguousarray(variant)))
        pixels.append(
            decode_image_bytes(encoded, f"calibration {number}", spec.image_size, spec.color_mode)
        )
    return np.stack(pixels)


def _png_bytes(image: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _input_name(session: Any) -> str:
    return session.get_inputs()[0].name


def onnx_forward(spec: EmbedderSpec, build_model: Callable[[], Any]) -> Forward:
    """uint8 pixels -> unit vectors with ONNX Runtime; exports the model if it is not cached."""
    return parallel_forward(load_cached_session(ensure_exported(spec, build_model)))
