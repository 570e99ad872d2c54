"""Client options: an option written in the store URL always wins over the setting's default.

Checked on the options PyMongo's client really ends up with (it connects only on first use)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from pymongo import AsyncMongoClient, ReadPreference

from finverse_reco.compose import store_options, store_url
from finverse_reco.settings import Settings
from finverse_reco.store.mongo_options import MongoOptions, client_options, new_client

URL = "mongodb://reco:secret@db-1:27017,db-2:27017/finverse_interactions"
SETTINGS = MongoOptions(timeout_ms=2000, server_selection_timeout_ms=15_000, pool_size=50)


@pytest.fixture
async def client_for() -> AsyncIterator[Callable[[str], AsyncMongoClient[dict[str, Any]]]]:
    clients: list[AsyncMongoClient[dict[str, Any]]] = []

    def build(url: str, options: MongoOptions = SETTINGS) -> AsyncMongoClient[dict[str, Any]]:
        clients.append(new_client(url, options))
        return clients[-1]

    yield build
    for client in clients:
        await client.close()


def server_selection_s(client: AsyncMongoClient[Any]) -> float:
    return client.options.server_selection_timeout


def socket_timeout_s(client: AsyncMongoClient[Any]) -> float | None:
    return client.options.pool_options.socket_timeout


def max_pool_size(client: AsyncMongoClient[Any]) -> int:
    return client.options.pool_options.max_pool_size


def operation_timeout_s(client: AsyncMongoClient[Any]) -> float | None:
    return client.options.timeout


@pytest.mark.parametrize(
    ("option", "effective", "from_url", "from_setting"),
    [
        ("serverSelectionTimeoutMS=30000", server_selection_s, 30.0, 15.0),
        ("socketTimeoutMS=45000", socket_timeout_s, 45.0, None),
        ("maxPoolSize=7", max_pool_size, 7, 50),
        ("timeoutMS=9000", operation_timeout_s, 9.0, 2.0),
    ],
)
async def test_an_option_in_the_url_wins_over_the_setting(
    client_for, option, effective, from_url, from_setting
) -> None:
    assert effective(client_for(f"{URL}?{option}")) == from_url
    assert effective(client_for(URL)) == from_setting


async def test_url_option_names_are_case_insensitive(client_for) -> None:
    client = client_for(f"{URL}?maxpoolsize=3&SERVERSELECTIONTIMEOUTMS=1234")
    assert (max_pool_size(client), server_selection_s(client)) == (3, 1.234)


async def test_writes_are_majority_acknowledged_unless_the_url_says_otherwise(client_for) -> None:
    assert client_for(URL).write_concern.document == {"w": "majority"}
    assert client_for(f"{URL}?w=1").write_concern.document == {"w": 1}


async def test_read_preference_comes_from_the_url(client_for) -> None:
    assert client_for(URL).read_preference == ReadPreference.PRIMARY
    trainer = client_for(f"{URL}?readPreference=secondaryPreferred&replicaSet=rs0")
    assert trainer.read_preference == ReadPreference.SECONDARY_PREFERRED


async def test_datetimes_are_always_aware(client_for) -> None:
    assert client_for(f"{URL}?tz_aware=false").codec_options.tz_aware


def test_only_the_options_the_url_leaves_out_are_passed() -> None:
    passed = client_options(f"{URL}?w=2&appName=ops-console", SETTINGS)
    assert passed == {
        "serverSelectionTimeoutMS": 15_000,
        "connectTimeoutMS": 15_000,
        "maxPoolSize": 50,
        "timeoutMS": 2000,
    }


def test_no_operation_timeout_when_none_is_asked() -> None:
    assert "timeoutMS" not in client_options(URL, MongoOptions(timeout_ms=None))


def test_a_malformed_url_option_is_a_clear_error_without_credentials() -> None:
    with pytest.raises(ValueError, match="invalid") as raised:
        client_options(f"{URL}?maxPoolSize", SETTINGS)
    assert "secret" not in str(raised.value)


@pytest.mark.parametrize(
    ("process", "expected"),
    [
        ("serving", {"timeout_ms": 2000, "server_selection_timeout_ms": 2000}),
        ("worker", {"timeout_ms": 15_000, "server_selection_timeout_ms": 15_000}),
        ("trainer", {"timeout_ms": 15_000, "server_selection_timeout_ms": 15_000}),
    ],
)
def test_each_kind_of_process_has_its_own_defaults(process, expected) -> None:
    options = store_options(Settings(_env_file=None), process)
    assert options == {**expected, "pool_size": 50}


def test_the_trainer_reads_from_its_own_url_when_one_is_set() -> None:
    plain = Settings(_env_file=None, store_url="mongodb://db/finverse_interactions")
    trainer_url = "mongodb://db/finverse_interactions?readPreference=secondaryPreferred"
    split = plain.model_copy(update={"store_trainer_url": trainer_url})
    assert store_url(plain, "trainer") == plain.store_url
    assert store_url(split, "trainer") == trainer_url
    assert store_url(split, "worker") == store_url(split, "serving") == plain.store_url
