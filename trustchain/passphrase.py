"""Where the node passphrase comes from: a file, the environment, or a prompt.

Never from a plain command-line argument (it would show in ``ps`` and in
shell history).  Order: ``--passphrase-file F``, then
``TRUSTCHAIN_PASSPHRASE``, then an interactive prompt on a terminal.
"""

from __future__ import annotations

import getpass
import logging
import os
import stat
import sys
from collections.abc import Mapping
from pathlib import Path

from trustchain.errors import PassphraseError

ENV_VAR = "TRUSTCHAIN_PASSPHRASE"
log = logging.getLogger(__name__)


def read_passphrase_file(path: Path) -> str:
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PassphraseError(f"passphrase file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PassphraseError(f"cannot read passphrase file {path}: {exc}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("passphrase file %s is readable by other users; chmod 600 it", path)
    passphrase = text.rstrip("\r\n")
    if not passphrase:
        raise PassphraseError(f"passphrase file {path} is empty")
    return passphrase


def obtain_passphrase(
    passphrase_file: Path | None,
    *,
    confirm: bool = False,
    environ: Mapping[str, str] | None = None,
    interactive: bool | None = None,
) -> str:
    """Return the passphrase from the first source that has one.

    :param confirm: when prompting, ask twice (for a new key store).
    :raises PassphraseError: if no source has one.
    """
    if passphrase_file is not None:
        return read_passphrase_file(passphrase_file)
    env = os.environ if environ is None else environ
    if env.get(ENV_VAR):
        return env[ENV_VAR]
    if interactive is None:
        interactive = sys.stdin.isatty() and sys.stderr.isatty()
    if not interactive:
        raise PassphraseError(
            f"no passphrase: set {ENV_VAR}, pass --passphrase-file FILE, or run on a terminal"
        )
    first = getpass.getpass("TrustChain passphrase: ")
    if confirm and getpass.getpass("Repeat passphrase: ") != first:
        raise PassphraseError("the passphrases do not match")
    if not first:
        raise PassphraseError("empty passphrase")
    return first
