#!/usr/bin/env bash
# Install foldervision into .venv, then run the main jobs on the samples shipped in the repo
# (no internet needed): LeNet from scratch, MobileNetV2 fine-tuning, and image retrieval.
# Results go to runs/demo/ (replaced on each demo run; nothing else is touched).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
fv=.venv/bin/foldervision
mkdir -p runs/demo

echo "== Task 1: LeNet from scratch on samples/digits (10 epochs, 80/20 split) ==" >&2
$fv train samples/digits/train --model lenet --epochs 10 --val-split 0.2 --seed 42 \
    --out runs/demo/lenet --overwrite
$fv evaluate runs/demo/lenet samples/digits/test

echo "== Task 2: fine-tune MobileNetV2 (ImageNet weights) on samples/digits ==" >&2
$fv train samples/digits/train --model mobilenetv2 --seed 42 --out runs/demo/mobilenetv2 \
    --overwrite
$fv evaluate runs/demo/mobilenetv2 samples/digits/test
$fv compare runs/demo/lenet runs/demo/mobilenetv2

echo "== Task 3: image retrieval: top 4 for each query in query_images/ ==" >&2
$fv index images_database
first_query=$(ls query_images | head -n 1)
$fv search "query_images/$first_query" --database images_database -k 4 \
    --sheet runs/demo/retrieval_sheet.png
echo "contact sheet: runs/demo/retrieval_sheet.png; run reports: runs/demo/*/report.md" >&2
