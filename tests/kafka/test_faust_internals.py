"""The Faust internals the worker relies on are the ones it was written against.

``processors/faust_batches.py`` and ``processors/faust_app.py`` override or call private parts
of faust-streaming 0.15.3 (pinned in pyproject.toml), and one of aiokafka's (its group
coordinator's ``request_rejoin``). If an upgrade changes any of them, this
fails: read the new code, check the overrides still hold (the batch drain keeps Faust's
revocation and generation guards, the seek barrier is still awaited before the flow resumes),
then update the fingerprints below.
"""

import hashlib
import inspect
from importlib.metadata import version
from typing import cast

import pytest
from aiohttp import web
from aiokafka.consumer.group_coordinator import GroupCoordinator  # type: ignore[import-untyped]
from faust.app.base import App
from faust.tables import TableManager
from faust.tables.recovery import Recovery
from faust.transport.consumer import Consumer, ThreadDelegateConsumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaConsumer
from faust.web.drivers.aiohttp import Web as AiohttpWeb

from processors.faust_app import OkrApp, OkrTableManager, OkrWeb, Store, WorkerServices, create_app
from processors.faust_batches import FastFetchThread, OkrConsumer
from processors.kafka_config import WorkerConfig

RELIED_ON = [
    (Consumer, "_drain_messages", "44a2500309e83c63"),
    (Consumer, "_wait_next_records", "6218e1969a636b3f"),
    (Consumer, "perform_seek", "0e8c130ff4b0afd8"),
    (Consumer, "on_partitions_revoked", "d04b7ae72c6fc206"),
    (Consumer, "seek", "b86a9fe05f956b30"),  # every seek goes through _seek (ours: on the thread)
    (ThreadDelegateConsumer, "_seek", "4f95c631420410a5"),  # seeks off the consumer thread
    (AIOKafkaConsumerThread, "seek", "1498560d05f02582"),  # the aiokafka consumer's seek, as is
    (AIOKafkaConsumer, "_new_consumer_thread", "0870ec53dea75083"),
    (AIOKafkaConsumerThread, "_create_worker_consumer", "c2701bfc3e6f6cad"),
    (AIOKafkaConsumerThread, "_fetch_records", "39a2c6c79fc1455a"),
    (AIOKafkaConsumerThread, "_ensure_consumer", "ff4a4c693b7ec63f"),
    (GroupCoordinator, "request_rejoin", "f70a261c91c38cb5"),  # OkrConsumer.rejoin (aiokafka)
    (Recovery, "_resume_streams", "d986a6710c1aca98"),  # perform_seek (none for nothing)
    (App, "_new_consumer", "bff6ccd646b71ea9"),
    (App, "on_rebalance_start", "5c1e23de30674082"),
    (App, "_new_web", "9558ffdcacfa13bd"),  # OkrApp: its own web server class
    (AiohttpWeb, "__init__", "52b00c1bd653c82d"),  # _runner; web_application_options
    (AiohttpWeb, "start_server", "b0c4f10491828520"),  # _runner set up, then the site
    (AiohttpWeb, "_new_transport_tcp", "3f9463d869f309ec"),  # OkrWeb: WorkerServices.web_site
    (TableManager, "on_start", "365dd25fbc0e0684"),  # OkrTableManager: the same, less the sleep
    (TableManager, "_update_channels", "88e3941facc934d6"),  # what OkrTableManager still runs
]
"""(class, method, the first 16 hex digits of the SHA-256 of its source)."""


def test_the_pinned_faust_is_installed() -> None:
    assert version("faust-streaming") == "0.15.3"


@pytest.mark.parametrize(
    ("owner", "name", "fingerprint"), RELIED_ON, ids=[f"{o.__name__}.{n}" for o, n, _ in RELIED_ON]
)
def test_a_relied_on_faust_method_is_unchanged(owner: type, name: str, fingerprint: str) -> None:
    source = inspect.getsource(getattr(owner, name))
    found = hashlib.sha256(source.encode()).hexdigest()[:16]
    assert found == fingerprint, (
        f"{owner.__module__}.{owner.__qualname__}.{name} changed: review "
        "processors/faust_batches.py and processors/faust_app.py against it"
    )


def test_the_overrides_keep_faust_signatures() -> None:
    for mine, theirs, name in [
        (OkrConsumer, Consumer, "_drain_messages"),
        (OkrConsumer, Consumer, "_wait_next_records"),
        (OkrConsumer, Consumer, "perform_seek"),
        (OkrConsumer, Consumer, "on_partitions_revoked"),
        (OkrConsumer, ThreadDelegateConsumer, "_seek"),
        (FastFetchThread, AIOKafkaConsumerThread, "seek"),
        (FastFetchThread, AIOKafkaConsumerThread, "_create_worker_consumer"),
        (OkrTableManager, TableManager, "on_start"),
        (OkrWeb, AiohttpWeb, "_new_transport_tcp"),
        (OkrApp, App, "_new_web"),
    ]:
        ours = list(inspect.signature(getattr(mine, name)).parameters)
        assert ours == list(inspect.signature(getattr(theirs, name)).parameters), name


def test_the_app_frees_the_web_root_for_the_query_endpoint() -> None:
    """Faust's index page would answer GET / before the ClickHouse-HTTP handler."""
    app = create_app(WorkerConfig(servers=("127.0.0.1:9",)), WorkerServices(_no_store))
    assert all(prefix != "" for prefix, _ in app.web.blueprints._enabled)
    assert app.web.blueprints._enabled == []  # no Faust page: /router, /table answer anyone
    assert app.conf.table_standby_replicas > 0  # Faust's co-partitioning assignor, not round robin


def test_the_app_has_no_table_so_its_start_waits_for_none() -> None:
    """:class:`OkrTableManager` leaves out Faust's second of waiting for tables to register:
    the app has none."""
    app = create_app(WorkerConfig(servers=("127.0.0.1:9",)), WorkerServices(_no_store))
    assert isinstance(app.tables, OkrTableManager)
    assert len(app.tables) == 0


def test_the_web_server_listens_with_the_services_site_and_handler_args() -> None:
    """The worker's web server (its connections bounded: projections.http_bounds) starts
    the site :attr:`WorkerServices.web_site` makes, on Faust's runner, and aiohttp's
    Application has :attr:`WorkerServices.web_handler_args`."""
    made: list[tuple[web.BaseRunner, str, int]] = []
    made_site = cast(web.BaseSite, object())  # a real one needs the runner set up

    def site(runner: web.BaseRunner, host: str, port: int) -> web.BaseSite:
        made.append((runner, host, port))
        return made_site

    services = WorkerServices(_no_store, web_site=site, web_handler_args={"keepalive_timeout": 3})
    app = create_app(WorkerConfig(servers=("127.0.0.1:9",), web_port=6123), services)
    assert isinstance(app.web, OkrWeb)
    assert app.web._create_site() is made_site
    assert made == [(app.web._runner, "127.0.0.1", 6123)]
    assert app.web.web_app._handler_args == {"keepalive_timeout": 3}


def _no_store() -> Store:
    raise AssertionError("the store is not opened here")
