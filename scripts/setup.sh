#!/usr/bin/env bash
# Create .venv (once) and install flatgen with extras, CPU-only torch.
# Usage: bash scripts/setup.sh [EXTRAS]   (comma-separated; default: tests)
set -euo pipefail
EXTRAS="${1:-tests}"
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
# constraints.txt pins torch to the CPU wheel; an unpinned torch pulls a CUDA build.
python -m pip install --quiet -c constraints.txt -e ".[${EXTRAS}]"
python - <<'PY'
import sys
import torch
if torch.version.cuda is not None:
    sys.exit(f"error: torch {torch.__version__} is a CUDA build; expected the CPU wheel "
             "pinned in constraints.txt")
print(f"flatgen environment ready: torch {torch.__version__}")
PY
