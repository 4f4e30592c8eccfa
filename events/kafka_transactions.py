"""The ledger writers' producer: confluent-kafka (librdkafka), transactional or idempotent.

The only module that imports ``confluent_kafka``. kafka-python stays for everything else (admin,
the readers, the submitters): its pure-Python ``send`` caps a transactional writer near
20,000 events/s, librdkafka's is an order of magnitude faster, and aiokafka's producer cannot
get a producer id from Tansu.

A transactional producer is **fenced** by the next producer initialised with the same
``transactional.id``: the broker refuses every later write of the older one, in the middle of
a transaction too (KIP-98). A worker that owns ledger partition *p* writes with
``<app id>-seq-<p>``, so whoever owns *p* now fences every earlier owner.

:meth:`BatchProducer.send` returns when everything it was given is acknowledged, so a writer
can send in steps, each one durable before the next; :meth:`BatchProducer.transaction` puts
steps in one transaction. The order matters even inside a transaction: Tansu does not hide
aborted transactions from readers, so a crash in the middle leaves what reached it visible,
and what is visible must be a prefix of the steps.

A transaction left open by a writer that died holds up every committed read of the partitions
it wrote (the ledger partition, the shared rejections topic, outcomes). Two things end it: the
next producer initialised with the same transactional id (the fence), and, on a real Kafka,
the broker's ``transaction.timeout.ms``, set here to half the readers' bound
(:func:`transaction_timeout_ms`) so that a reader waiting for such a transaction sees it end
before it gives up. Tansu 0.6 has no such timeout (an abandoned transaction stays open, at any
setting): there only the fence ends it. See docs/ARCHITECTURE.md, "Crash points".
"""

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from events.kafka_client import OutRecord
from schemas.errors import LedgerUnavailableError, WriterFencedError

log = logging.getLogger("librdkafka")
"""Where librdkafka's own log lines go (instead of stderr)."""

MIN_TRANSACTION_TIMEOUT_MS = 1000
"""librdkafka's lower limit of ``transaction.timeout.ms``."""


def transaction_timeout_ms(timeout_s: float) -> int:
    """The broker-side timeout of a writer's transactions: half of ``timeout_s``, the bound of
    the readers (:class:`events.kafka_client.Reader` gives up after ``timeout_s`` without a
    record), so that a transaction nobody fences is aborted by a real Kafka while a committed
    read waiting for it still waits. A batch's transaction takes well under a second."""
    return max(MIN_TRANSACTION_TIMEOUT_MS, int(timeout_s * 1000) // 2)


def producer_config(
    servers: str, client_id: str, timeout_s: float, transactional_id: str | None = None
) -> dict[str, Any]:
    """librdkafka's settings of a ledger writer (``servers``: comma-separated), idempotent,
    transactional with ``transactional_id``."""
    # librdkafka refuses message and socket timeouts longer than the transaction timeout.
    request_timeout_ms = int(timeout_s * 1000)
    if transactional_id is not None:
        request_timeout_ms = transaction_timeout_ms(timeout_s)
    config: dict[str, Any] = {
        "bootstrap.servers": servers,
        "client.id": client_id,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 2,
        "batch.size": 1024 * 1024,
        "queue.buffering.max.messages": 1_000_000,
        "message.max.bytes": 8 * 1024 * 1024,
        "message.timeout.ms": request_timeout_ms,
        "socket.timeout.ms": request_timeout_ms,
    }
    if transactional_id is not None:
        config["transactional.id"] = transactional_id
        config["transaction.timeout.ms"] = transaction_timeout_ms(timeout_s)
    return config


_FENCED = {KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH}
"""librdkafka's codes for "another producer took over this transactional id"."""


class BatchProducer:
    """Produces batches of records in steps (see the module docstring). Not thread-safe."""

    def __init__(
        self,
        servers: Sequence[str],
        *,
        transactional_id: str | None = None,
        client_id: str = "okr-ledger",
        timeout_s: float = 30.0,
    ) -> None:
        """With ``transactional_id``, initialising the producer fences every earlier one with
        the same id (it waits for their open transaction to be aborted)."""
        self.transactional = transactional_id is not None
        self._timeout_s = timeout_s
        self._where = ",".join(servers)
        config = producer_config(self._where, client_id, timeout_s, transactional_id)
        try:
            self._producer = Producer(config, logger=log)
            if transactional_id is not None:
                self._producer.init_transactions(timeout_s)
        except KafkaException as error:
            raise self._fail("initialise a producer", error) from error

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One transaction around what :meth:`send` writes inside (nothing when the producer
        is only idempotent): committed at the end, aborted (when it still can be) on any
        error. A prefix of what was sent may stay visible on a broker that does not hide
        aborted transactions (Tansu), so send in the order that keeps a prefix meaningful."""
        if not self.transactional:
            yield
            return
        try:
            self._producer.begin_transaction()
        except KafkaException as error:
            raise self._fail("begin a transaction", error) from error
        try:
            yield
        except BaseException:
            self._abort()
            raise
        try:
            self._producer.commit_transaction(self._timeout_s)
        except KafkaException as error:
            self._abort()
            raise self._fail("commit a transaction", error) from error

    def send(self, records: Sequence[OutRecord]) -> list[int]:
        """Produce ``records`` and wait until every one is acknowledged; their offsets, in
        order. Raises :class:`WriterFencedError` when another producer took over the
        transactional id, :class:`LedgerUnavailableError` on any other failure."""
        if not records:
            return []
        try:
            return self._send(records)
        except KafkaException as error:
            raise self._fail("produce", error) from error

    def send_last(self, records: Sequence[OutRecord]) -> None:
        """The last step of a transaction, whose offsets nobody needs (the outcomes): queued
        without a delivery report per record and without waiting here, since committing the
        transaction waits for every record and fails (aborting it) if any of them failed. A
        producer that is only idempotent has no commit to wait on: it sends as :meth:`send`.
        Raises as :meth:`send`."""
        if not records:
            return
        if not self.transactional:
            self.send(records)
            return
        try:
            with _fatal_errors_raised():
                self._produce(records, None)
        except KafkaException as error:
            raise self._fail("produce", error) from error

    def _produce(
        self, records: Sequence[OutRecord], report: Callable[[KafkaError | None, Any], None] | None
    ) -> None:
        """Queue ``records`` in order (``report``: their delivery callback), waiting for room
        whenever the local queue is full."""
        produce, poll = self._producer.produce, self._producer.poll
        for r in records:
            headers: list[tuple[str, str | bytes | None]] | None = (
                list(r.headers) if r.headers else None
            )
            while True:
                try:
                    produce(r.topic, r.value, r.key, r.partition, report, headers=headers)
                    break
                except BufferError:  # the local queue is full: let it drain
                    poll(0.05)

    def _send(self, records: Sequence[OutRecord]) -> list[int]:
        # One delivery callback for all: reports come in production order within a partition,
        # so the n-th report of a partition is its n-th record.
        delivered: dict[tuple[str, int], list[int]] = {}
        failures: list[KafkaError] = []

        def report(error: KafkaError | None, message: Any) -> None:
            if error is not None:
                failures.append(error)
            else:
                where = (message.topic(), message.partition())
                delivered.setdefault(where, []).append(message.offset())

        with _fatal_errors_raised():
            self._produce(records, report)
            left = self._producer.flush(self._timeout_s)
        if failures:
            raise KafkaException(failures[0])
        if left:
            raise KafkaException(KafkaError(KafkaError._MSG_TIMED_OUT))
        taken: dict[tuple[str, int], int] = {}
        offsets = []
        for r in records:
            where = (r.topic, r.partition)
            index = taken.get(where, 0)
            taken[where] = index + 1
            offsets.append(delivered[where][index])
        return offsets

    def _abort(self) -> None:
        # In a fatal state (fenced) it cannot abort: it is done, and the caller starts over.
        with suppress(KafkaException):
            self._producer.abort_transaction(self._timeout_s)

    def _fail(self, action: str, error: KafkaException) -> LedgerUnavailableError:
        text = f"Kafka at {self._where}: cannot {action}: {error}"
        return WriterFencedError(text) if _fenced(error) else LedgerUnavailableError(text)

    def close(self) -> None:
        """Drop anything not sent (a fenced or failed producer has nothing worth waiting for).
        A fenced producer raises its fatal error from ``flush``: closing it must not (a zombie
        that wakes up drops its partitions and rejoins; the error once stopped the worker)."""
        self._producer.purge()
        with suppress(KafkaException, SystemError):
            self._producer.flush(0)


@contextmanager
def _fatal_errors_raised() -> Iterator[None]:
    """Around calls that run the delivery callbacks (``poll``, ``flush``): confluent-kafka
    raises a fatal error (the producer was fenced) from inside them and then runs the next
    callback with it pending, which fails with a :class:`SystemError` caused by it. Raise the
    :class:`KafkaException` itself, so that a fenced writer is reported as fenced (it used to
    stop the worker)."""
    try:
        yield
    except SystemError as error:
        if isinstance(error.__cause__, KafkaException):
            raise error.__cause__ from None
        raise


def _fenced(error: KafkaException) -> bool:
    cause = error.args[0] if error.args else None
    return isinstance(cause, KafkaError) and cause.code() in _FENCED
