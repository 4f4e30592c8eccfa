"""Attention alerts on Kafka: each new or resolved attention item, published once.

On a timer (a Faust timer on the worker, every ``OKR_ALERTS_INTERVAL_SECONDS``), the
publisher asks each org's attention list now (:func:`projections.monitoring.attention`) and
compares it with what the alerts topic (``OKR_KAFKA_TOPIC_ALERTS``, one partition, kept
forever) says is open: an item not open there is published ``open``, an open one no longer in
the list ``resolved``. Each record is keyed ``org_id/item_id``. What was published is read back
from the topic when the publisher starts, never kept only in memory, so a restarted worker does
not publish an item again. Then each published alert is POSTed to ``OKR_ALERT_WEBHOOK_URLS``
(best effort: a failing webhook is logged; the topic is the record).
"""

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from events.kafka_admin import KEEP_FOREVER, TopicSpec, ensure_topics
from events.kafka_client import Connection, OutRecord, Producer, Reader
from projections import monitoring, queries
from projections.queries import Moment
from projections.store import ProjectionStore

log = logging.getLogger(__name__)
OPEN, RESOLVED = "open", "resolved"
PARTITION = 0


def alert_key(org_id: str, item_id: str) -> str:
    return f"{org_id}/{item_id}"


def alerts_topic(name: str) -> TopicSpec:
    """One partition (one order), kept forever: what was published is read back from it."""
    return TopicSpec(name, 1, KEEP_FOREVER)


@dataclass
class AlertPublisher:
    """Publishes the changes of the attention lists to the alerts topic, each once."""

    connection: Connection
    topic: str
    focus_limit: int = 5
    open_items: dict[str, dict[str, Any]] | None = field(default=None, init=False)
    """Key -> the open alert's item, as the topic says (None: not read yet)."""

    def restore(self) -> dict[str, dict[str, Any]]:
        """Read the topic from its beginning: the items whose last alert is ``open``."""
        ensure_topics(self.connection, [alerts_topic(self.topic)])
        reader = Reader(self.connection)
        found: dict[str, dict[str, Any]] = {}
        try:
            for record in reader.read(self.topic, {PARTITION: None}):
                alert = orjson.loads(record.value)
                key = alert_key(alert["org_id"], alert["item_id"])
                if alert["state"] == OPEN:
                    found[key] = alert["item"]
                else:
                    found.pop(key, None)
        finally:
            reader.close()
        self.open_items = found
        return found

    def changes(self, store: ProjectionStore, now: datetime) -> list[dict[str, Any]]:
        """The alerts to publish: new items ``open``, items gone ``resolved``."""
        open_items = self.open_items if self.open_items is not None else self.restore()
        current: dict[str, dict[str, Any]] = {}
        answered: set[str] = set()
        for org_id in queries.org_ids(store):
            try:
                items = monitoring.attention(store, org_id, Moment(now=now), self.focus_limit)
            except Exception:
                log.exception("attention of org %r failed: its alerts wait", org_id)
                continue
            answered.add(org_id)
            for item in items:
                current[alert_key(org_id, item["item_id"])] = item
        # An org not answered (failed, or not in the store yet: an org never leaves the
        # ledger) keeps its open items: an incomplete store resolves nothing.
        current.update(
            (key, item) for key, item in open_items.items() if item["org_id"] not in answered
        )
        alerts = [_alert(OPEN, item, now) for key, item in current.items() if key not in open_items]
        alerts += [
            _alert(RESOLVED, item, now) for key, item in open_items.items() if key not in current
        ]
        return alerts

    def publish(self, alerts: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """Produce ``alerts`` (acknowledged before the open items change); them."""
        alerts = list(alerts)
        if not alerts:
            return alerts
        records = [
            OutRecord(
                self.topic,
                PARTITION,
                alert_key(a["org_id"], a["item_id"]).encode(),
                orjson.dumps(a, option=orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC),
            )
            for a in alerts
        ]
        producer = Producer(self.connection)
        try:
            producer.send_all(records)
        finally:
            producer.close()
        assert self.open_items is not None
        for a in alerts:
            key = alert_key(a["org_id"], a["item_id"])
            if a["state"] == OPEN:
                self.open_items[key] = a["item"]
            else:
                self.open_items.pop(key, None)
        return alerts

    def tick(self, store: ProjectionStore, now: datetime | None = None) -> list[dict[str, Any]]:
        """One round: compare, publish; the alerts published."""
        return self.publish(self.changes(store, now or datetime.now(UTC)))


def _alert(state: str, item: dict[str, Any], now: datetime) -> dict[str, Any]:
    return {
        "org_id": item["org_id"],
        "item_id": item["item_id"],
        "state": state,
        "kind": item["kind"],
        "subject_kind": item["subject_kind"],
        "subject_id": item["subject_id"],
        "item": orjson.loads(orjson.dumps(item, option=orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC)),
        "published_at": now,
    }


async def post_webhooks(urls: list[str], alerts: list[dict[str, Any]]) -> int:
    """POST each alert (JSON) to each URL; how many POSTs succeeded (2xx). Failures are
    logged, never raised: the alerts topic is the record."""
    if not urls or not alerts:
        return 0
    import aiohttp

    done = 0
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for alert in alerts:
            body = orjson.dumps(alert, option=orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC)
            for url in urls:
                try:
                    async with session.post(
                        url,
                        data=body,
                        headers={"content-type": "application/json"},
                        allow_redirects=False,
                    ) as response:
                        if 200 <= response.status < 300:
                            done += 1
                        else:
                            log.warning("alert webhook %s answered %s", url, response.status)
                except (aiohttp.ClientError, TimeoutError) as error:
                    log.warning("alert webhook %s failed: %s", url, error)
    return done
