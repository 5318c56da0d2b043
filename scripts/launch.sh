#!/usr/bin/env bash
# Set up (if needed) and open the review station; arguments go to main.py (e.g. a folder).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python main.py "$@"
