"""The Kafka topics of OKR Ledger and an idempotent ``ensure_topics``.

The ledger and the rejections are the record (every submission ends in exactly one of them),
so both are kept forever (``retention.ms=-1``, ``cleanup.policy=delete``: never compacted).
The rejections topic has as many partitions as the ledger: intake partition *p*'s rejections go
to rejections partition *p*, so that no partition is written by two transactional writers
(:mod:`events.kafka_log`, "Rejection lanes"). Intake and outcomes are transient and keep the
broker's default retention.

Never add partitions to an existing ledger topic: an org's partition is chosen from its id
and the partition count, and all of one org's events must stay in one partition.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from events.kafka_client import Admin, Connection
from schemas.errors import ConfigurationError

KEEP_FOREVER: Mapping[str, str] = {"retention.ms": "-1", "cleanup.policy": "delete"}


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    configs: Mapping[str, str] = field(default_factory=dict)


def okr_topics(
    *, intake: str, ledger: str, rejections: str, outcomes: str, partitions: int
) -> list[TopicSpec]:
    """The four topics of OKR Ledger."""
    return [
        TopicSpec(intake, partitions),
        TopicSpec(ledger, partitions, KEEP_FOREVER),
        TopicSpec(rejections, partitions, KEEP_FOREVER),
        TopicSpec(outcomes, partitions),
    ]


def ensure_topics(connection: Connection, specs: Sequence[TopicSpec]) -> list[str]:
    """Create the topics that are missing; the names created. Safe to run any number of times.

    An existing topic keeps its partitions. If the broker reports a configuration of an
    existing topic that differs from its spec (e.g. a ledger with a finite retention), this
    raises :class:`ConfigurationError` rather than changing a live topic.
    """
    admin = Admin(connection)
    try:
        existing = admin.topics()
        created = [
            s.name
            for s in specs
            if s.name not in existing and admin.create_topic(s.name, s.partitions, s.configs)
        ]
        for spec in specs:
            if spec.configs and spec.name not in created:
                _check_configs(admin, spec)
        return created
    finally:
        admin.close()


def _check_configs(admin: Admin, spec: TopicSpec) -> None:
    reported = admin.topic_configs(spec.name)
    wrong = {
        key: reported[key]
        for key, value in spec.configs.items()
        if key in reported and reported[key] != value
    }
    if wrong:
        settings = ", ".join(f"{key}={value}" for key, value in spec.configs.items())
        found = ", ".join(f"{key}={value}" for key, value in wrong.items())
        raise ConfigurationError(
            f"topic {spec.name} exists with {found}; it must have {settings} "
            "(change it with kafka-configs.sh --alter, or choose another topic name)"
        )
