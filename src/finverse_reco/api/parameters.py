"""Request parameters of the hot GET endpoints: checked by one pydantic model, published in OpenAPI.

FastAPI resolves declared parameters one by one, through its dependency solver: about 130 µs a
request for the user endpoint's eight, more than ranking a 1,000-product catalog
(docs/BENCHMARKS.md, "Serving"). Validating the query string with one model costs about 5 µs. The
model stays the single source of truth: `openapi_parameters` publishes its fields, and a failure
raises FastAPI's own RequestValidationError, so clients see the usual 422 body.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, ValidationError

from finverse_reco.events import ID_PATTERN, ID_RE

Query = TypeVar("Query", bound="QueryParameters")

_ID_SCHEMA = {"type": "string", "pattern": ID_PATTERN, "maxLength": 128}


class QueryParameters(BaseModel):
    """Base of a query-string model. Unknown parameters are ignored, as FastAPI ignores them."""

    model_config = ConfigDict(extra="ignore", frozen=True)


def path_id(request: Request, name: str) -> str:
    """A path segment that must be an entity id (`ID_PATTERN`)."""
    value: str = request.path_params[name]
    if ID_RE.match(value) is None:
        raise RequestValidationError(
            [
                {
                    "type": "string_pattern_mismatch",
                    "loc": ("path", name),
                    "msg": f"String should match pattern '{ID_PATTERN}'",
                    "input": value,
                }
            ]
        )
    return value


def query(request: Request, model: type[Query]) -> Query:
    if not request.scope["query_string"]:
        return _defaults(model)  # the usual request: nothing to parse
    try:
        return model.model_validate(request.query_params)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        for error in errors:
            error["loc"] = ("query", *error["loc"])
        raise RequestValidationError(errors) from None


@cache
def _defaults(model: type[Query]) -> Query:
    return model()


def openapi_parameters(
    model: type[QueryParameters], path_ids: Mapping[str, str]
) -> dict[str, list[dict[str, Any]]]:
    """`openapi_extra` for a route: its path ids (name → description), then the model's fields."""
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "description": text, "schema": _ID_SCHEMA}
        for name, text in path_ids.items()
    ]
    schema = model.model_json_schema()
    required = set(schema.get("required", ()))
    for name, field_schema in schema["properties"].items():
        field_schema = _without_null(field_schema)
        parameter = {"name": name, "in": "query", "required": name in required}
        if "description" in field_schema:
            parameter["description"] = field_schema.pop("description")
        parameter["schema"] = field_schema
        parameters.append(parameter)
    return {"parameters": parameters}


def _without_null(field_schema: dict[str, Any]) -> dict[str, Any]:
    """`X | None` is how a model says "optional"; in a query string an absent parameter says it."""
    schema = {key: value for key, value in field_schema.items() if key != "title"}
    variants = schema.pop("anyOf", None)
    if variants is not None:
        (kept,) = [variant for variant in variants if variant.get("type") != "null"]
        schema = {**kept, **schema}
    return schema
