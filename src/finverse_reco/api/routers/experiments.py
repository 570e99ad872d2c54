"""Admin: experiments between model versions, strategies and policy variants (docs/FEEDBACK.md).
Thin: the body is validated here, the service loads versions and writes the experiments file."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from finverse_reco.api.dependencies import Components, components, require_api_key
from finverse_reco.api.errors import APIError
from finverse_reco.api.responses import JSONBytesResponse
from finverse_reco.api.schemas import ErrorOut
from finverse_reco.events import ID_PATTERN
from finverse_reco.events import describe_validation_error as describe
from finverse_reco.service.experiments import (
    Arm,
    Experiment,
    ExperimentConflict,
    ExperimentError,
)

router = APIRouter(
    prefix="/api/v1/admin/experiments",
    tags=["admin"],
    dependencies=[Depends(require_api_key)],
    responses={
        401: {"model": ErrorOut, "description": "No valid admin key or console session"},
        403: {"model": ErrorOut, "description": "A console session without its CSRF token"},
        429: {"model": ErrorOut, "description": "Too many failed authentications"},
    },
)
Parts = Annotated[Components, Depends(components)]
ExperimentId = Annotated[str, Path(pattern=ID_PATTERN, max_length=64)]


class ExperimentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Annotated[str, Field(pattern=ID_PATTERN, max_length=64)]
    salt: Annotated[str, Field(min_length=1, max_length=128)] | None = Field(
        None, description="Default: the experiment id (a new salt reshuffles the customers)"
    )
    arms: Annotated[list[Arm], Field(min_length=1, max_length=20)]


class ExperimentsOut(BaseModel):
    experiments: list[Experiment]
    running: str | None


def _out(experiment: Experiment) -> JSONBytesResponse:
    return JSONBytesResponse(experiment.model_dump(mode="json"))


@router.get("", response_model=ExperimentsOut, summary="Admin: every experiment, and which runs")
async def list_experiments(parts: Parts) -> JSONBytesResponse:
    registry = parts.experiments.registry
    running = registry.running
    return JSONBytesResponse(
        {
            "experiments": [e.model_dump(mode="json") for e in registry.experiments],
            "running": running.id if running is not None else None,
        }
    )


@router.post(
    "",
    status_code=201,
    response_model=Experiment,
    responses={409: {"model": ErrorOut}, 422: {"model": ErrorOut}},
    summary="Admin: start an experiment (its arms' model versions and policy variants are "
    "loaded first)",
)
async def start_experiment(parts: Parts, body: ExperimentIn) -> JSONBytesResponse:
    try:
        experiment = Experiment(
            id=body.id,
            salt=body.salt or body.id,
            arms=tuple(body.arms),
            started_at=datetime.now(UTC),
        )
    except ValidationError as exc:
        raise APIError(422, describe(exc)) from None
    try:
        started = await parts.experiments.start(experiment)
    except ExperimentConflict as exc:
        raise APIError(409, str(exc)) from None
    except ExperimentError as exc:
        raise APIError(422, str(exc)) from None
    response = _out(started)
    response.status_code = 201
    return response


@router.post(
    "/{experiment_id}/stop",
    response_model=Experiment,
    responses={404: {"model": ErrorOut}, 422: {"model": ErrorOut}},
    summary="Admin: stop an experiment (idempotent); from the next request on, no arm is served",
)
async def stop_experiment(parts: Parts, experiment_id: ExperimentId) -> JSONBytesResponse:
    try:
        return _out(parts.experiments.stop(experiment_id))
    except KeyError:
        raise APIError(404, f"no experiment {experiment_id!r}") from None
    except ExperimentError as exc:  # the experiments file cannot be read
        raise APIError(422, str(exc)) from None
