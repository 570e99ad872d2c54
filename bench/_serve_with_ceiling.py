"""The real app plus one benchmark-only route, `/bench/ceiling`, served by uvicorn like `serve`.

The ceiling answers a precomputed recommendations-shaped body (ten catalog products, the same keys
as the user endpoint) through the same JSONBytesResponse and middleware stack without touching the
model, so `bench/serving.py` can compare an endpoint with what the stack alone can do. It is routed
as the recommendation endpoints are (an included APIRouter, a path with an id, a handler taking the
request), so that what differs is only the endpoints' own work: parsing, ranking, presenting.
Settings come from the environment (FINVERSE_*), as for `finverse-reco serve`.

    .venv/bin/python bench/_serve_with_ceiling.py --workers 2
"""

from __future__ import annotations

import argparse
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import uvicorn
from fastapi import APIRouter, FastAPI, Request

from finverse_reco.api.app import create_app
from finverse_reco.api.responses import JSONBytesResponse
from finverse_reco.catalog.local import read_catalog_file
from finverse_reco.observability import configure_logging
from finverse_reco.settings import load_settings

CEILING_PREFIX = "/bench"


def ceiling_body(catalog_path: Path, limit: int = 10) -> dict:
    products = read_catalog_file(catalog_path)[:limit] if catalog_path.exists() else []
    return {
        "recommendations": [
            {
                "id": p.id,
                "name": p.name,
                "category": p.category,
                "institution": p.institution,
                "relevanceScore": round(1.0 / rank, 6),
                "score": round(4.0 / rank, 6),
                "rank": rank,
                "reason": {
                    "code": "similar_to_interacted",
                    "text": f"Similar to {products[0].name}, which you showed interest in",
                    "evidence": [
                        {
                            "type": "product",
                            "id": products[0].id,
                            "label": products[0].name,
                            "value": 0.9,
                        }
                    ],
                },
            }
            for rank, p in enumerate(products, start=1)
        ],
        "user_id": "user_0000000",
        "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "model_version": "20261127T000000Z-000000",
        "strategy": "personalized",
        "degraded": False,
    }


def build(log_stream: TextIO | None = None) -> FastAPI:
    """uvicorn factory (one call per worker process); `bench/serving.py cpu` calls it in-process
    with a file for the access log."""
    settings = load_settings()
    configure_logging(settings.log_level, log_stream)  # as `finverse-reco serve` does
    app = create_app(settings)
    body = ceiling_body(settings.catalog_path)

    router = APIRouter(prefix=CEILING_PREFIX)

    @router.get("/ceiling/{user_id}", include_in_schema=False)
    async def ceiling(request: Request) -> JSONBytesResponse:
        return JSONBytesResponse(body)

    app.include_router(router)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=1)
    arguments = parser.parse_args()
    settings = load_settings()
    uvicorn.run(
        "_serve_with_ceiling:build",
        factory=True,
        app_dir=str(Path(__file__).resolve().parent),
        workers=arguments.workers,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_config=None,
    )


if __name__ == "__main__":
    main()
