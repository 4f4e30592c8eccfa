"""The HTTP API and dashboard (``okr-ledger serve``): installed by the ``http`` extra.

Only :mod:`okr_ledger.http.app` and what it imports need the web framework; the keys
(:mod:`okr_ledger.http.keys`, :mod:`okr_ledger.http.key_stores`) and the webhook mappings'
checks work without it, so ``okr-ledger keys`` runs on a core install.
"""
