"""The HTTP API and dashboard (``okr-ledger serve``): installed by the ``http`` extra.

Only :mod:`okr_ledger.http.app` and what it imports need the extra; the keys
(:mod:`okr_ledger.http.keys`, :mod:`okr_ledger.http.key_stores`, :mod:`okr_ledger.http.cli`)
do not, so ``okr-ledger keys`` runs on a core install.
"""
