"""The Kafka runtime: a worker decides and projects; this side submits and reads.

Submissions are produced to the intake topic and answered by a worker on the outcomes topic
(:mod:`okr_ledger.kafka_submit`); the projections are the worker's (its ClickHouse server, or
its embedded store through its query endpoint: :mod:`okr_ledger.served_store`).
"""

from collections.abc import Iterator
from contextlib import contextmanager

from okr_ledger.embedded_runtime import rebuild_in_place
from okr_ledger.http.key_stores import KafkaKeyStore
from okr_ledger.kafka_submit import KafkaSubmitter
from okr_ledger.runtime import ProgressBar, ReadEachTime, RebuildReport, no_progress
from okr_ledger.served_store import open_served_store
from okr_ledger.settings import Settings
from projections.client import parse_url, require_not_held
from projections.store import ProjectionStore
from schemas.errors import CredentialRefusedError, ProjectionUnavailableError

COMPACTED = {"cleanup.policy": "compact"}
"""The keys topic keeps each key's latest record."""


class KafkaRuntime:
    """``kafka://``: see the module docstring."""

    name = "kafka"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def init_ledger(self) -> str:
        from events.kafka_admin import TopicSpec, ensure_topics, okr_topics
        from events.kafka_client import Connection
        from events.kafka_log import servers_from_url

        s = self.settings
        specs = okr_topics(**s.topic_names, partitions=s.kafka_partitions)
        specs.append(TopicSpec(s.kafka_topic_keys, 1, COMPACTED))
        servers = servers_from_url(s.resolved_ledger_url)
        created = set(ensure_topics(Connection(servers, "okr-init"), specs))
        topics = ", ".join(
            f"{spec.name} ({'created' if spec.name in created else 'exists'})" for spec in specs
        )
        return f"ledger: {s.resolved_ledger_url}, topics {topics}"

    def submitter(self) -> KafkaSubmitter:
        return KafkaSubmitter.from_settings(self.settings)

    @contextmanager
    def projections(self, bar: ProgressBar = no_progress) -> Iterator[ProjectionStore]:
        """The worker's live projections; a query never catches up here (the worker does)."""
        with open_served_store(self.settings) as store:
            yield store

    @contextmanager
    def serving(self, workers: int) -> Iterator[dict[str, str]]:
        """Nothing to share: each process reads the served store itself."""
        yield {}

    def reader(self, shared: bool = False) -> ReadEachTime:
        """A read's store is a client of the served store: nothing to keep open (nor to
        share: ``shared`` changes nothing)."""
        return ReadEachTime(self)

    def key_store(self, follow: bool = False) -> KafkaKeyStore:
        """The compacted keys topic, followed in a thread when ``follow``."""
        from events.kafka_log import servers_from_url

        s = self.settings
        return KafkaKeyStore(
            servers_from_url(s.resolved_ledger_url),
            s.kafka_topic_keys,
            follow=follow,
            refresh_s=s.http_key_refresh_seconds,
        )

    def _served(self) -> bool:
        """Whether a worker serves the store (it may hold it from another process namespace,
        a container, where :func:`projections.client.holder` cannot see it)."""
        try:
            open_served_store(self.settings).close()
        except CredentialRefusedError:
            return True  # one answers: the comparison's own open says what to fix
        except ProjectionUnavailableError:
            return False
        return True

    def rebuild(self, keep: bool = False, bar: ProgressBar = no_progress) -> RebuildReport:
        """Beside the running worker, in a fresh database; an embedded store that no process
        holds and no worker serves, in place. Decided once, before any work: a store that
        stops answering during the comparison is an error, not a rebuild in place (review33)."""
        from okr_ledger.live_rebuild import rebuild_beside_live

        target = parse_url(self.settings.resolved_clickhouse_url)
        if target.embedded and target.path and not self._served():
            require_not_held(target)  # held, and not by a worker that answers: say by whom
            report = rebuild_in_place(self.settings, bar)
            report.notes.insert(0, "no worker holds the embedded store: rebuilt it in place")
            return report
        found = rebuild_beside_live(self.settings, keep, lambda n: bar("rebuilding", n))
        orgs = len(found.limits.ledger)
        report = RebuildReport(
            f"rebuilt {found.events} ledger events of {orgs} orgs and "
            f"{found.limits.rejected} rejections beside the live projections, up to their "
            "checkpoints",
            differences=found.differences,
            baseline="the live projections",
        )
        if found.not_projected:
            report.notes.append(
                f"not projected by the worker yet: {', '.join(found.not_projected)}"
            )
        if found.kept:
            report.notes.append(f"kept the rebuild: {found.kept}")
        if found.left:
            report.notes.append(found.left)
        if not orgs and not found.limits.rejected and not found.differences:
            report.compared = False
            report.notes.append("there are no live projections yet: nothing to compare")
        return report
