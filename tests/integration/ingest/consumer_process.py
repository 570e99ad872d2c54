"""The consumer as an OS process of its own, for the tests that kill it.

python consumer_process.py STORE_URL '{"rabbitmq_url": …, <other IngestConfig fields>}'
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys

from finverse_reco.ingest import IngestConfig, run_consumer
from finverse_reco.store import open_store


async def consume(store_url: str, config: IngestConfig) -> None:
    store = open_store(store_url)
    await store.open()
    try:
        await run_consumer(config, store)
    finally:
        await store.close()


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(consume(sys.argv[1], IngestConfig(**json.loads(sys.argv[2]))))
