#!/usr/bin/env bash
# Set up (once) and run the swiss-roll quick start.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
python examples/swissroll_quickstart.py "$@"
