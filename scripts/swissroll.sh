#!/usr/bin/env bash
# The main job: set up .venv (once), then run the swiss-roll experiment into
# results/swissroll (figures, summary.json, report.md). Extra arguments go to
# `flatgen swissroll`, e.g. --quick, --no-annealed (3 min instead of about 27
# on two cores), --n-jobs 1 or --out DIR. Interrupted?
# Run it again: finished steps are reused.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
flatgen swissroll --out results/swissroll --n-jobs 2 "$@"
