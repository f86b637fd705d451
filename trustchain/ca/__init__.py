"""The software-only certificate authority: hierarchy, issuance, revocation, limits, audit.

Pure cores (policy, profiles, revocation documents, rate limits, the audit
chain) take time as an argument; every signature with a CA key goes through
:mod:`trustchain.ca.signer`, the one module that touches CA private keys.
"""
