"""The small ledger of ``fixtures/store-issue-7.json``: the projection store that OKR Ledger made
of it before issue 9 (migrations 1 to 3), dumped table by table."""

from tests.projections.ledgers import LedgerBuilder, day


def write_ledger(builder: LedgerBuilder) -> None:
    """Every kind of event the projections count: a cascade, check-ins (one late), a correction,
    a retraction and a target revision."""
    builder.skeleton(themes=("growth", "ops"))
    builder.objective("top", theme_ids=["growth"], rollup="both")
    builder.objective("o1", parent_objective_id="top", rollup="key_results")
    builder.key_result("k1", "o1")
    builder.key_result("k2", "o1", kind="stay_above", start=5, target=7)
    builder.key_result("k3", "top", kind="decrease", start=100, target=20)
    first = builder.check_in("k1", 10, day(1))
    for n in range(2, 8):
        builder.check_in(f"k{1 + n % 3}", 10 * n, day(n))
    builder.check_in("k1", 5, day(3))  # late: measured before the current one
    builder.add("CheckInCorrected", {"key_result_id": "k1", "corrects_event_id": first,
                                     "value": 12, "reason": "typo"}, day(8))  # fmt: skip
    retracted = builder.check_in("k3", 60, day(9))
    builder.add("CheckInRetracted", {"key_result_id": "k3", "retracts_event_id": retracted,
                                     "reason": "wrong"}, day(10))  # fmt: skip
    builder.add("KeyResultTargetRevised", {"key_result_id": "k1", "target": 80,
                                           "reason": "scope"}, day(4))  # fmt: skip
