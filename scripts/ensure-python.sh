#!/usr/bin/env bash
# Make sure the given Python is >= 3.11 and can create virtual environments.
# On a fresh Debian machine `python3 -m venv` needs the python3-venv package.
set -euo pipefail
python=${1:-python3}
if ! command -v "$python" >/dev/null; then
  echo "error: $python not found; TrustChain needs Python >= 3.11" >&2; exit 1
fi
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "error: $("$python" --version) is too old; TrustChain needs Python >= 3.11" >&2; exit 1
fi
if ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
  else
    echo "error: $python cannot create virtual environments; install python3-venv (as root: apt-get install python3-venv)" >&2
    exit 1
  fi
fi
