"""Which model an LP-FT photo run should keep, measured on held-out test photos (issue 22).

One `train` run per seed (the photo recipe's phases, in this process), every epoch's weights
kept, then on the test folder: the probe-fitted head alone, each fine-tuned epoch, the
weight-space average of the head-alone model and the last fine-tuned epoch (WiSE-FT,
Wortsman et al. 2022) for a few mixing weights, the end points and mixes also with flip
test-time augmentation (log-probabilities of the photo and its mirror averaged: the same
argmax as averaged logits), and the model the run's validation split picks. This is for
calibrating the recipe on some seeds; report the defaults on other seeds with
photo_training.py.

With --ensembles, also the mean of the default model's probabilities (the 3/4 average with the
mirror) and a linear probe's (logistic regression, C by 4-fold CV on the split's training part,
balanced class weights when the largest class has over 3x the smallest's photos): "ens_m2" with
the MobileNetV2 probe (photo_training.py's fair probe), "ens_all3" with the probe on the
vectors of MobileNetV2, EfficientNet-Lite0 and Lite2 side by side (`--model
mobilenetv2+efficientnet-lite0+efficientnet-lite2`'s embedder), and "probe_all3" that probe alone.
For the three-backbone probe also: "ens_all3_full" / "probe_all3_full" with the probe fitted on
all labelled photos (training and validation parts), and "ens_all3[_full]_laTAU" with logit
adjustment (the ensemble's log-probabilities minus TAU * log of the training part's class
prior; the same as the plain ensemble on a balanced folder).

    python benchmarks/photo_training_variants.py --train-per-class 64 --seeds 0,1,2
    python benchmarks/photo_training_variants.py --train-per-class 64 --uneven 2:10 --seeds 0
    python benchmarks/photo_training_variants.py --train-per-class 64 --seeds 0 --ensembles

One JSON line per seed. Test folders are balanced (50 photos per class by default): the
figures are test accuracy, equal to balanced accuracy there, in percent.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from photo_training import DEFAULT_DATA, embed, linear_probe, make_subsets  # noqa: E402

MIXES = (0.5, 0.75)
"""WiSE-FT mixing weights: the share of the fine-tuned weights in the average."""


def one_seed(arguments: argparse.Namespace, seed: int) -> dict:
    import keras
    import tensorflow as tf

    from foldervision.models.saving import traced_inference
    from foldervision.training.data import (
        load_splits,
        make_preprocessor,
        split_record,
        training_data,
    )
    from foldervision.training.fitting import BestEpoch, build_model, fit_phases
    from foldervision.training.settings import TrainingConfig, resolve_settings

    class EveryEpoch(BestEpoch):
        """The best-epoch choice as `train` makes it, and a copy of every epoch's weights."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.all_weights: list[list[np.ndarray]] = []
            self.val_accuracy: list[float] = []

        def on_epoch_end(self, epoch, logs=None):
            super().on_epoch_end(epoch, logs)
            self.all_weights.append([np.copy(w) for w in self.classifier.get_weights()])
            self.val_accuracy.append(float((logs or {}).get("val_accuracy", 0.0)))

    with tempfile.TemporaryDirectory(prefix="photo-variants-") as workspace:
        data, test = make_subsets(arguments, Path(workspace), seed)
        out = Path(workspace) / "run"
        settings = resolve_settings(
            TrainingConfig(data=data, out=out, seed=seed, overwrite=True, verbose=0)
        )
        keras.utils.set_random_seed(seed)
        tf.config.experimental.enable_op_determinism()
        built = build_model(settings)
        model = built.model
        preprocessor = make_preprocessor(settings, built.weights_description)
        splits = load_splits(settings, preprocessor)
        out.mkdir()
        (out / "split.json").write_text(json.dumps(split_record(settings, splits)))
        train_data = training_data(splits, preprocessor, settings)
        recorder = EveryEpoch(Path(workspace) / "best.weights.h5", model)
        fit_phases(
            model,
            settings.model_entry,
            settings.phases,
            train_data,
            recorder,
            0,
            settings.class_weights,
            [],
        )
        from foldervision.datasets import scan_labelled_folder

        test_folder = scan_labelled_folder(test, class_names=settings.folder.class_names)
        loaded = preprocessor.load(test_folder.paths)
        pixels = loaded.pixels.astype(np.float32)
        labels = test_folder.labels_of(loaded.paths)

        def log_probabilities(weights: list[np.ndarray], mirror: bool) -> np.ndarray:
            model.set_weights(weights)
            forward = traced_inference(model)
            batches = [pixels[i : i + 64] for i in range(0, len(pixels), 64)]
            if mirror:
                batches = [batch[:, :, ::-1].copy() for batch in batches]
            return np.log(np.concatenate([np.asarray(forward(b)) for b in batches]) + 1e-12)

        def accuracy(log_probs: np.ndarray) -> float:
            predicted = log_probs.argmax(axis=1)
            recalls = [np.mean(predicted[labels == c] == c) for c in set(labels)]
            return round(100 * float(np.mean(recalls)), 1)

        head, last = recorder.all_weights[0], recorder.all_weights[-1]
        candidates = {"head": head}
        for epoch, weights in enumerate(recorder.all_weights[1:], start=1):
            candidates[f"ft{epoch}"] = weights
        for mix in MIXES:
            candidates[f"wise{mix}"] = [(1 - mix) * h + mix * f for h, f in zip(head, last)]
        figures: dict = {"seed": seed, "val_accuracy": recorder.val_accuracy}
        figures["kept_by_validation"] = recorder.best_epoch - 1  # 0: the head alone
        figures["test"] = {}
        for name, weights in candidates.items():
            plain = log_probabilities(weights, mirror=False)
            figures["test"][name] = accuracy(plain)
            if not name.startswith("ft") or weights is last:  # flips: the end points, mixes
                mirrored = log_probabilities(weights, mirror=True)
                figures["test"][f"{name}+flip"] = accuracy((plain + mirrored) / 2)
        figures["test"]["validation_choice"] = figures["test"][
            "head" if figures["kept_by_validation"] == 0 else f"ft{figures['kept_by_validation']}"
        ]
        probe = linear_probe(out, data, test, seed)
        figures["probe"] = round(100 * probe["test_accuracy"], 1)
        if "balanced_test_accuracy" in probe:
            figures["balanced_probe"] = round(100 * probe["balanced_test_accuracy"], 1)
        if arguments.ensembles:
            average = candidates[f"wise{DEFAULT_MIX}"]
            mean_log = (log_probabilities(average, False) + log_probabilities(average, True)) / 2
            default = np.exp(mean_log - mean_log.max(axis=1, keepdims=True))
            default /= default.sum(axis=1, keepdims=True)
            split = json.loads((out / "split.json").read_text())
            train = [(data / path, label) for path, label in split["train"]]
            everything = train + [(data / path, label) for path, label in split["validation"]]
            prior = np.bincount([label for _, label in train]) / len(train)
            for name, model_name in ENSEMBLE_PROBES.items():
                fits = (("", train), ("_full", everything)) if name == "all3" else (("", train),)
                labelled = [path for path, _ in fits[-1][1]]  # the largest set a fit uses
                vectors = ProbeVectors(model_name, labelled, loaded.paths)
                for fitted_on, photos in fits:
                    probabilities = vectors.probe_probabilities(photos, seed)
                    ensemble = np.log((default + probabilities) / 2)
                    figures["test"][f"ens_{name}{fitted_on}"] = accuracy(ensemble)
                    figures["test"][f"probe_{name}{fitted_on}"] = accuracy(
                        np.log(probabilities + 1e-12)
                    )
                    if name == "all3":
                        for tau in LOGIT_ADJUSTMENTS:
                            adjusted = ensemble - tau * np.log(prior)
                            figures["test"][f"ens_all3{fitted_on}_la{tau}"] = accuracy(adjusted)
    return figures


ENSEMBLE_PROBES = {"m2": "mobilenetv2", "all3": "mobilenetv2+efficientnet-lite0+efficientnet-lite2"}
DEFAULT_MIX = 0.75


LOGIT_ADJUSTMENTS = (0.5, 1)
"""tau of the logit adjustment tried on the ensemble: log-probabilities minus tau * log(the
training part's class prior); on a balanced folder it changes nothing."""


class ProbeVectors:
    """The labelled and test photos' vectors from `model`'s retrieval embedder, embedded once,
    and the recipe's probe (`training.ensemble.fit_vector_probe`, photo_training.py's probe;
    class weights as the recipe sets them from the counts) fitted on any of the labelled ones."""

    def __init__(self, model: str, labelled_paths: list[Path], test_paths: list) -> None:
        from foldervision.retrieval.embedder import load_embedder
        from foldervision.retrieval.settings import IndexSettings

        embedder = load_embedder(IndexSettings(labelled_paths[0].parent, model=model))
        self.vector_of = dict(zip(map(str, labelled_paths), embed(labelled_paths, embedder)))
        self.test_vectors = embed([Path(path) for path in test_paths], embedder)

    def probe_probabilities(self, photos: list[tuple[Path, int]], seed: int) -> np.ndarray:
        """The test photos' class probabilities from the probe fitted on `photos`."""
        from foldervision.recipes import class_weights_for
        from foldervision.training.ensemble import fit_vector_probe

        labels = np.array([label for _, label in photos])
        vectors = np.stack([self.vector_of[str(path)] for path, _ in photos])
        class_weights, _ = class_weights_for(np.bincount(labels).tolist())
        probe = fit_vector_probe(vectors, labels, class_weights, seed)
        logits = self.test_vectors @ probe.kernel + probe.bias
        probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
        return probabilities / probabilities.sum(axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--train-per-class", type=int, required=True)
    parser.add_argument("--test-per-class", type=int, default=50)
    parser.add_argument("--val-split", type=float, default=0.2, help="train's default")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--uneven", help="SMALL:COUNT, as in photo_training.py")
    parser.add_argument("--ensembles", action="store_true", help="also the probe ensembles")
    arguments = parser.parse_args()
    arguments.files = None
    for seed in (int(seed) for seed in arguments.seeds.split(",")):
        print(json.dumps(one_seed(arguments, seed)), flush=True)


if __name__ == "__main__":
    main()
