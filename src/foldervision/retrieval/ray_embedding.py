"""Embedding on a Ray cluster: Ray Data decodes and embeds, this process writes the index.

    foldervision index DATABASE --ray                     # local Ray on this machine's cores
    foldervision index DATABASE --ray-address HEAD:6379   # an existing cluster

`RayEmbedder` is an `Embedder` whose `embed_files` sends the paths through
`ray.data.from_items(paths).map_batches(...)` over a pool of actors; each actor builds its own
Embedder with a picklable factory (`load_embedder` of the index's settings: the same model,
backend and precision) and checks that its spec equals the driver's, so a worker with other
weights fails instead of writing other vectors.

With the ONNX backend the driver exports the model once, before any actor starts, and hands the
file to the actors through Ray's object store: an actor only opens an ONNX Runtime session
(one intra-op thread per CPU it was given), never imports TensorFlow, on any node, whatever
its cache holds. Inside an actor, decoding (threads) overlaps the network's forward passes.
The driver receives batches in order and writes them through the same catalogue transactions
as a single-process run, so resuming, ids and stores behave exactly the same.

Ray is the optional extra `foldervision[cluster]`; nothing imports it unless --ray is used.
Workers must see the image paths: a shared folder mounted at the same path (see
docs/deployment.md).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from foldervision.errors import FoldervisionError
from foldervision.images import SkippedFile
from foldervision.retrieval.embedder import (
    DEFAULT_BATCH_SIZE,
    EmbeddedBatch,
    Embedder,
    EmbedderSpec,
    load_embedder,
)

if TYPE_CHECKING:
    from foldervision.retrieval.settings import IndexSettings

logger = logging.getLogger(__name__)

CPUS_PER_WORKER = 1
"""One core per actor, its network pinned to one thread: N actors use N cores without
oversubscribing them (ONNX Runtime and TensorFlow would otherwise start a thread per core of the
node in every actor)."""

LOCAL_RAY_START_TRIES = 3
"""Starts of a local Ray before giving up: Ray's raylet has a fixed 30 s to come up, which a
busy machine can miss once (CI did, 2026-12-04)."""

WORKER_BATCH_SIZE = 128
"""Paths per Ray task: each actor decodes them in threads while its network runs
`DEFAULT_BATCH_SIZE` at a time, and each task starts and drains that pipeline once. Local Ray,
2 one-core actors, against the single process (`python benchmarks/cluster_scale.py --ray-only
--ray-files N --task-sizes ...`, quiet machine): on 1000 flowers5 photos 1.73x at 32 paths,
1.65x at 64, 1.51x at 128 (2 rounds); on 4317, 1.30x at 32, 1.18-1.22x at 128, 1.21x at 256."""

EmbedderFactory = Callable[[], Embedder]
"""A picklable way to build the embedder on a worker, e.g. partial(load_embedder, settings)."""


class RayEmbedder(Embedder):
    """Embed files on Ray workers; the vectors equal those of the factory's Embedder locally."""

    def __init__(
        self,
        factory: EmbedderFactory,
        spec: EmbedderSpec,
        address: str | None = None,
        workers: int | None = None,
        cpus_per_worker: float = CPUS_PER_WORKER,
        worker_batch_size: int = WORKER_BATCH_SIZE,
    ) -> None:
        super().__init__(spec, build_feature_model=lambda: None)
        self.factory = factory
        self.address = address
        self.workers = workers
        self.cpus_per_worker = cpus_per_worker
        self.worker_batch_size = worker_batch_size
        self._local: Embedder | None = None

    def local_embedder(self) -> Embedder:
        """The factory's Embedder in this process (built once; its model only on first use)."""
        if self._local is None:
            self._local = self.factory()
        return self._local

    def embed_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """Pixels already in this process are embedded here (queries, uploads)."""
        return self.local_embedder().embed_pixels(pixels)

    def exported_model(self) -> bytes | None:
        """The ONNX file the workers run, exported here first if no run has cached it yet."""
        local = self.local_embedder()
        if local.backend != "onnx":
            return None
        from foldervision.retrieval.onnx_backend import ensure_exported

        return ensure_exported(local.spec, local.build_embedding_model).read_bytes()

    def embed_files(
        self, paths: Sequence[str | os.PathLike[str]], batch_size: int = DEFAULT_BATCH_SIZE
    ) -> Iterator[EmbeddedBatch]:
        if not paths:
            return
        ray = connect_ray(self.address)
        model = self.exported_model()  # before any actor starts: none of them exports it
        model_ref = ray.put(model) if model is not None else None
        workers = self.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        task_size = max(batch_size, self.worker_batch_size)
        workers = max(1, min(workers, -(-len(paths) // task_size)))
        dataset = ray.data.from_items([{"path": str(path)} for path in paths])
        with warnings.catch_warnings():
            # Ray 2.60 deprecates extra remote arguments but has no named max_restarts yet.
            warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
            embedded = dataset.map_batches(
                EmbedOnWorker,
                fn_constructor_args=(
                    self.factory,
                    self.spec.to_dict(),
                    self.cpus_per_worker,
                    model_ref,
                    batch_size,
                ),
                batch_size=task_size,
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=workers),
                num_cpus=self.cpus_per_worker,
                max_restarts=0,  # a failed worker fails the run; the next run resumes
            )
        for rows in embedded.iter_batches(batch_size=batch_size, batch_format="numpy"):
            yield _batch_from_rows(rows)


class EmbedOnWorker:
    """A Ray Data actor: holds one Embedder, turns a batch of paths into vectors or reasons."""

    def __init__(
        self,
        factory: EmbedderFactory,
        spec: dict[str, Any],
        threads: float,
        model: Any = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        count = str(max(1, int(threads)))
        for variable in ("FOLDERVISION_ORT_THREADS", "TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS"):
            os.environ[variable] = count
        os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
        self.batch_size = batch_size
        self.embedder = factory()
        if self.embedder.spec.to_dict() != spec:
            raise FoldervisionError(
                f"a Ray worker built {self.embedder.spec.describe()}, not the driver's "
                f"{EmbedderSpec.from_dict(spec).describe()}; give the workers the same weights"
            )
        if model is not None and self.embedder.backend == "onnx":
            install_exported_model(self.embedder.spec, _resolve(model))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        paths = [str(path) for path in batch["path"]]
        vectors: dict[str, bytes] = {}
        reasons: dict[str, str] = {}
        # embed_files decodes in threads ahead of the forward pass it is running.
        for embedded in self.embedder.embed_files(paths, self.batch_size):
            for path, vector in zip(embedded.paths, embedded.vectors):
                vectors[str(path)] = vector.astype("<f4").tobytes()
            for skip in embedded.skipped:
                reasons[str(Path(skip.path))] = skip.reason
        keys = [str(Path(path)) for path in paths]
        return {
            "path": np.asarray(paths, dtype=object),
            "vector": np.asarray([vectors.get(key, b"") for key in keys], dtype=object),
            "reason": np.asarray([reasons.get(key, "") for key in keys], dtype=object),
        }


def install_exported_model(spec: EmbedderSpec, model: bytes) -> Path:
    """Put the driver's ONNX file where this node's onnx backend looks for the spec's model."""
    from foldervision.atomic import atomic_path
    from foldervision.retrieval.onnx_backend import exported_model_path

    path = exported_model_path(spec)
    if not path.is_file() or path.read_bytes() != model:
        with atomic_path(path) as temporary:
            Path(temporary).write_bytes(model)
    return path


def _resolve(model: Any) -> bytes:
    """The model's bytes, whether handed over directly or as a Ray object reference."""
    if isinstance(model, bytes):
        return model
    import ray

    return ray.get(model)


def _batch_from_rows(rows: dict[str, np.ndarray]) -> EmbeddedBatch:
    batch = EmbeddedBatch(paths=[], vectors=np.zeros((0, 0), np.float32))
    vectors = []
    for path, payload, reason in zip(rows["path"], rows["vector"], rows["reason"]):
        if reason:
            batch.skipped.append(SkippedFile(str(path), str(reason)))
        else:
            batch.paths.append(Path(str(path)))
            vectors.append(np.frombuffer(payload, dtype="<f4"))
    if vectors:
        batch.vectors = np.stack(vectors).astype(np.float32)
    return batch


def connect_ray(address: str | None = None, cpus: int | None = None) -> Any:
    """Join the cluster at `address`, or start a local Ray on `cpus` cores (default: all), once."""
    try:
        import ray
    except ImportError as error:
        raise FoldervisionError(
            "--ray needs Ray, which is not installed; pip install 'foldervision[cluster]'"
        ) from error
    if not ray.is_initialized():
        options: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR}
        if address:
            try:
                ray.init(address=address, **options)
            except (ConnectionError, RuntimeError, TimeoutError) as error:
                raise FoldervisionError(
                    f"cannot reach the Ray cluster at {address}: {error}"
                ) from error
        else:
            _start_local_ray(ray, cpus or os.cpu_count() or 1, options)
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # same ids as a single-process run
    context.enable_progress_bars = False  # the CLI draws its own
    return ray


def _start_local_ray(ray: Any, cpus: int, options: dict[str, Any]) -> None:
    """Start Ray here, trying again if the machine was too busy for Ray's own start-up wait.

    Ray gives its raylet a fixed 30 s to register and then raises a bare `Exception`, leaving
    the processes it had started running; a loaded machine (a CI runner, a laptop mid-build)
    can miss that window once and make it the next time. The stray processes are stopped
    before each new try.
    """
    import psutil  # Ray's own dependency: importing ray puts its copy on the path

    for attempt in range(1, LOCAL_RAY_START_TRIES + 1):
        already_running = {child.pid for child in psutil.Process().children(recursive=True)}
        try:
            ray.init(num_cpus=cpus, include_dashboard=False, **options)
            return
        except Exception as error:  # noqa: BLE001 - Ray's start-up timeout is a bare Exception
            ray.shutdown()
            _stop_processes_started_since(psutil, already_running)
            if attempt == LOCAL_RAY_START_TRIES:
                reason = str(error).splitlines()[0] if str(error) else type(error).__name__
                raise FoldervisionError(
                    f"cannot start a local Ray ({attempt} tries): {reason} "
                    "Close other heavy programs and try again, or index without --ray."
                ) from error
            logger.warning("a local Ray did not start (%s); trying again", error)


def _stop_processes_started_since(psutil: Any, already_running: set[int]) -> None:
    """Terminate (then kill) this process's children that were not running before a try."""
    strays = [
        child
        for child in psutil.Process().children(recursive=True)
        if child.pid not in already_running
    ]
    for child in strays:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.terminate()
    _, alive = psutil.wait_procs(strays, timeout=5)
    for child in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()


def ray_embedder(
    settings: IndexSettings, address: str | None = None, workers: int | None = None
) -> RayEmbedder:
    """What `--ray` / `--ray-address` mean: the settings' embedder, run on Ray workers.

    Model, image size, backend and precision all come from `settings`, on the driver and on
    every worker; the store's options (its credentials) stay on the driver.
    """
    from foldervision.clip.models import is_clip_model

    if is_clip_model(settings.model):
        raise FoldervisionError(
            f"--ray does not run CLIP models ({settings.model}) yet; index without --ray."
        )
    connect_ray(address)  # fail now, in one line, if Ray is missing or unreachable
    local = load_embedder(settings)  # resolves the weights and the spec; builds nothing
    factory = functools.partial(load_embedder, settings.without_store())
    return RayEmbedder(factory, local.spec, address, workers)
