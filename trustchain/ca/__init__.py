"""The software-only certificate authority: hierarchy, issuance, revocation, limits, audit.

Pure cores (policy, profiles, revocation documents, rate limits, the audit
chain) take time as an argument; the CA object (``authority.py``) reaches
storage, rate limits, the audit log and key creation only through the
contracts of ``store.py``, and issues certificates as a sequence of steps
(``steps.py``) that an adapter performs; every signature with a CA key goes
through :mod:`trustchain.ca.signer`, the one module that touches CA private keys.
"""
