#!/usr/bin/env bash
# Create .venv (once) and install flatgen with its test tools, CPU-only torch.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
# constraints.txt pins torch to the CPU wheel; an unpinned torch pulls a CUDA build.
python -m pip install --quiet -c constraints.txt -e '.[tests]'
python - <<'PY'
import sys
import torch
if torch.version.cuda is not None:
    sys.exit(f"error: torch {torch.__version__} is a CUDA build; expected the CPU wheel "
             "pinned in constraints.txt")
print(f"flatgen environment ready: torch {torch.__version__}")
PY
