"""The gate: the registry's approval enforced at the archive's edge.

``keys`` (signing keys, rotation, JWKS), ``tokens`` (minted for the access
answer), ``decisions`` (the verify endpoint's judgement and its cache),
``usage`` (granted and refused decisions per server, email and day, written
in batches) and ``edgekeys`` (the per-server key an edge sends).
"""
