"""Training cost of MobileNetV2 per input size and per fine-tuning depth (2 CPU cores).

    python benchmarks/mobilenetv2_input_size.py [--sizes 32,48,64]

Times steady-state training steps of 64 images (after a warm-up) with the backbone frozen
("head"), the top 6 blocks trainable ("top:6") and every block trainable ("all"), and prints
the projected time of one epoch over the 14,898 training images of MNIST 0/1/2.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import tensorflow as tf

from foldervision.models import TrainingPhase, get_model_entry
from foldervision.training.fitting import compile_for_phase

BATCH_SIZE = 64
TIMED_STEPS = 12
TRAIN_IMAGES = 14_898


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="32,48,64")
    arguments = parser.parse_args()
    spec = get_model_entry("mobilenetv2")
    generator = np.random.default_rng(0)
    steps_per_epoch = -(-TRAIN_IMAGES // BATCH_SIZE)
    for size in map(int, arguments.sizes.split(",")):
        model = spec.build(3, image_size=size, weights="auto").model
        pixels = generator.integers(0, 256, (BATCH_SIZE * TIMED_STEPS, size, size, 3))
        labels = generator.integers(0, 3, BATCH_SIZE * TIMED_STEPS)
        dataset = tf.data.Dataset.from_tensor_slices((pixels.astype("float32"), labels))
        dataset = dataset.batch(BATCH_SIZE)
        for trainable in ("head", "top:6", "all"):
            phase = TrainingPhase("timing", 1, 1e-4, trainable=trainable, schedule="constant")
            compile_for_phase(model, spec, phase, steps_per_epoch=TIMED_STEPS)
            model.fit(dataset.take(2), epochs=1, verbose=0)
            started = time.perf_counter()
            model.fit(dataset, epochs=1, verbose=0)
            seconds_per_step = (time.perf_counter() - started) / TIMED_STEPS
            print(
                f"{size:3d} px  {trainable:6s}  {1000 * seconds_per_step:6.0f} ms/step  "
                f"-> {seconds_per_step * steps_per_epoch:5.0f} s per epoch of {TRAIN_IMAGES}",
                flush=True,
            )


if __name__ == "__main__":
    main()
