#!/usr/bin/env bash
# Install everything (dev, export, Milvus and Ray extras included) into .venv, then lint and run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev,export,milvus,cluster
.venv/bin/ruff check src tests benchmarks scripts ./*.py
.venv/bin/python -m pytest -q "$@"
