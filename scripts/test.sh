#!/usr/bin/env bash
# Install everything (dev, export, Milvus and Ray extras included) into .venv, lint, run the test
# suite, then check the built wheel as a user installs it (outside the checkout, see the script).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev,export,milvus,cluster
# The web page's browser test drives Debian's chromium (Playwright's own download needs the
# internet). Install it once when we can; elsewhere that one test is skipped, saying why.
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
.venv/bin/ruff check src tests benchmarks scripts ./*.py
.venv/bin/ruff format --check src tests benchmarks scripts ./*.py
.venv/bin/python -m pytest -q "$@"
.venv/bin/python scripts/check_installed_wheel.py
