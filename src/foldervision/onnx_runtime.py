"""Running an ONNX file on the CPU: one way for embedders and classifiers alike.

A session runs single-threaded; `parallel_forward` runs several at once, one image each, on a
pool with one thread per core (ONNX Runtime releases the GIL). On the 2-core reference machine
that beat one run spread over both cores (see RUN_BATCH_SIZE).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from foldervision.errors import FoldervisionError

RUN_BATCH_SIZE = 1
"""Images per `session.run`. The network alone, MobileNetV2 224 fp32 on the 2-core reference
machine (`python benchmarks/embedding_speed.py --files 0 --searches 0 --model-only 6`): one run
on two threads 245-246 images/s at 16 images per run and 262 at 4; two single-threaded runs
side by side 241-247 at 16, 283-292 at 4, 307-314 at 2 and 313-321 at 1 (each run's working
set stays in its core's cache, and no thread waits for another between layers). Whole
`foldervision index --rebuild` of 1000 flowers5 photos (farm-bench, medians of 3): 4.05 s at
1 image per run, 4.10 s at 2, 4.24 s at 4."""


def parallel_runs() -> int:
    """How many single-threaded runs go at once: one per core.

    FOLDERVISION_ORT_THREADS overrides it (a crowded machine, a Ray worker holding one core).
    """
    return int(os.environ.get("FOLDERVISION_ORT_THREADS", 0)) or max(1, os.cpu_count() or 2)


def open_session(path: Path, threads: int = 1) -> Any:
    """A CPU session whose runs stay on the calling thread; idle, it holds no spinning threads."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def load_cached_session(path: Path) -> Any:
    """`open_session` on a file this project cached; a damaged one is a one-line error."""
    try:
        return open_session(path)
    except Exception as error:  # onnxruntime raises its own types for a damaged file
        raise FoldervisionError(
            f"{path}: cannot load this cached ONNX model ({type(error).__name__}); delete the "
            "file and run again to export it afresh."
        ) from error


def parallel_forward(session: Any) -> Callable[[np.ndarray], np.ndarray]:
    """pixels (N, ...) -> the session's first output (N, ...), RUN_BATCH_SIZE images per run,
    `parallel_runs()` runs at once, results in input order."""
    input_name = session.get_inputs()[0].name
    runs = parallel_runs()
    pool = ThreadPoolExecutor(runs, thread_name_prefix="foldervision-onnx") if runs > 1 else None

    def run_slice(pixels: np.ndarray) -> np.ndarray:
        return session.run(None, {input_name: pixels})[0]

    def run(pixels: np.ndarray) -> np.ndarray:
        floats = np.asarray(pixels, dtype=np.float32)
        slices = [floats[i : i + RUN_BATCH_SIZE] for i in range(0, len(floats), RUN_BATCH_SIZE)]
        if pool is None or len(slices) < 2:
            outputs = [run_slice(part) for part in slices or [floats]]
        else:
            outputs = list(pool.map(run_slice, slices))
        return np.asarray(np.concatenate(outputs), dtype=np.float32)

    return run
