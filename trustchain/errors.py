"""The one exception hierarchy of TrustChain.

As in h11, errors are split by *whose* fault they are:

* :class:`LocalError` -- the operator or calling code misused TrustChain
  (bad configuration, wrong passphrase, a data directory that is missing or
  in use).  The fix is on this side.
* :class:`RemoteError` -- data that came from somewhere else is wrong (a peer
  sent a malformed frame, a genesis document fails verification).  The node
  must answer such input with a protocol-correct error and carry on.

The docstring of each class is its default message, as in dnspython.  The
CLI prints ``str(error)`` on one line and exits 1; it never shows a traceback
for a :class:`TrustchainError`.
"""

from __future__ import annotations


class TrustchainError(Exception):
    """TrustChain error."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message if message is not None else (self.__doc__ or "").strip())


class LocalError(TrustchainError):
    """The request cannot be carried out as given."""


class RemoteError(TrustchainError):
    """Data received from elsewhere is invalid."""

    #: Application error code sent to a peer when this error ends a stream.
    error_code: int = 0


# --- local misuse -----------------------------------------------------------


class ConfigError(LocalError):
    """The configuration is invalid."""


class DataDirError(LocalError):
    """The data directory cannot be used."""


class NotInitialisedError(DataDirError):
    """The data directory holds no initialised node (run `trustchain init`)."""


class AlreadyInitialisedError(DataDirError):
    """The data directory already holds a node."""


class DataDirLockedError(DataDirError):
    """The data directory is in use by another trustchain process."""


class PassphraseError(LocalError):
    """No usable passphrase was given."""


class WrongPassphraseError(PassphraseError):
    """The passphrase does not unlock this key store."""


class KeyStoreError(LocalError):
    """The key store cannot carry out this operation."""


class KeyNotFoundError(KeyStoreError):
    """No such key in the key store."""


class CorruptKeyError(KeyStoreError):
    """A key file failed its integrity check (tampered with or damaged)."""


class ListenError(LocalError):
    """A listening socket cannot be opened."""


class StorageError(LocalError):
    """The node database cannot be used."""


class SchemaTooNewError(StorageError):
    """The database was written by a newer TrustChain."""


class ForkError(StorageError):
    """A different block is already stored at this height (a fork is never stored)."""


class DoubleSignError(StorageError):
    """A different message of this node is already stored for this height, round and kind."""


# --- remote faults ----------------------------------------------------------


class GenesisError(RemoteError):
    """The genesis document is invalid."""


class PinMismatchError(GenesisError):
    """The genesis document does not match the pinned SHA-256."""


class CanonicalJSONError(RemoteError):
    """The document is not canonical JSON."""


class ConsensusCodecError(RemoteError):
    """The consensus message is malformed."""


# --- refusals of a request ----------------------------------------------------
# Raised by the edges' method tables for what is wrong with a request as a
# whole; each service raises its own errors for the rest.  transport/problem.py
# maps both to a status, once for every transport.


class BadRequest(RemoteError):
    """The request is not valid for this method."""


class Forbidden(RemoteError):
    """The caller is authenticated but may not do this."""


class NotFound(RemoteError):
    """There is no such thing here."""


class Unavailable(TrustchainError):
    """The node cannot serve this right now; retry."""


class StatusAnswer(RemoteError):
    """An answer that is not a success and carries its own body, for a protocol that
    defines its refusals' bodies (tlog-witness's 409 names the size it has): sent as is,
    with ``status``, over HTTP, HTTP/3 and stoq/1, never as a problem document."""

    def __init__(self, status: int, body: bytes, media_type: str) -> None:
        super().__init__(body[:200].decode("utf-8", "replace").strip() or str(status))
        self.status = status
        self.body = body
        self.media_type = media_type
