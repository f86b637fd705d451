#!/usr/bin/env bash
# `make run`: a development node in $DATA (default ./data) on [::1].
# First use creates a random passphrase file and a fresh genesis.
set -euo pipefail
DATA=${DATA:-data}
VENV=${VENV:-.venv}
trustchain="$VENV/bin/trustchain"
pass="$DATA/passphrase"

mkdir -p "$DATA" && chmod 700 "$DATA"
if [ ! -f "$pass" ]; then
  (umask 077 && "$VENV/bin/python" -c 'import secrets; print(secrets.token_urlsafe(32))' >"$pass")
  echo "WARNING: created a random passphrase in $pass for development." >&2
  echo "         A production node keeps its passphrase out of the data directory." >&2
fi
if [ ! -f "$DATA/genesis.json" ]; then
  "$trustchain" init --data-dir "$DATA" --passphrase-file "$pass"
fi
echo "Starting the node in $DATA (Ctrl-C stops it cleanly)." >&2
exec "$trustchain" serve --data-dir "$DATA" --passphrase-file "$pass"
