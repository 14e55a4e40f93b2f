#!/usr/bin/env bash
# Create the virtualenv and install Rallypoint with its pinned dependencies (and the lock).
set -euo pipefail
python_bin=${1:-python3}
venv=${2:-.venv}
if ! "$python_bin" -c 'import sys; sys.exit(0 if sys.version_info[:2] >= (3, 11) else 1)'; then
  echo "Rallypoint needs Python 3.11 or newer; $python_bin is $("$python_bin" --version 2>&1)." >&2
  exit 1
fi
if ! "$python_bin" -m venv --help >/dev/null 2>&1; then
  echo "python3-venv is missing: apt-get install python3-venv" >&2
  exit 1
fi
[ -x "$venv/bin/python" ] || "$python_bin" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
if [ -f requirements.lock ]; then
  "$venv/bin/python" -m pip install --quiet -r requirements.lock
fi
"$venv/bin/python" -m pip install --quiet -e '.[dev]'
echo "Installed Rallypoint into $venv"
