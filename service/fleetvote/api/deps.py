"""Dependencies shared by the routers: the fleet, the settings, the API key check.

All are ``async def``: FastAPI runs plain ``def`` dependencies in its thread pool, one hop per
dependency per request, which measurably added to /classify's latency."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from ..fleet.manager import Fleet
from ..metrics import Metrics
from ..settings import Settings


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_fleet(request: Request) -> Fleet:
    return request.app.state.fleet


async def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


# Declared as OpenAPI security schemes, so /docs and schema-driven clients know about the key;
# auto_error=False: the key is optional until the settings ask for one. The same key is accepted
# in either header: X-API-Key for scripts and the dashboard, `Authorization: Bearer` for what can
# send only standard credentials (Prometheus' scrape_config `authorization`).
api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False,
                              description="required on every endpoint but /healthz and /readyz when "
                                          "the service is started with an API key")
bearer = HTTPBearer(auto_error=False, description="the API key as `Authorization: Bearer <key>`")


async def require_api_key(settings: Annotated[Settings, Depends(get_settings)],
                          x_api_key: Annotated[str | None, Security(api_key_header)] = None,
                          authorization: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)] = None
                          ) -> None:
    if settings.api_key is None:
        return
    given = x_api_key if x_api_key is not None else (authorization.credentials if authorization else None)
    if given is None or not secrets.compare_digest(given.encode("utf-8", "surrogateescape"),
                                                   settings.api_key.encode("utf-8", "surrogateescape")):
        raise HTTPException(status_code=401, detail="missing or wrong API key: send it as X-API-Key or "
                                                    "Authorization: Bearer",
                            headers={"WWW-Authenticate": 'ApiKey, Bearer realm="fleetvote"'})  # both schemes


async def no_unknown_query(request: Request) -> None:
    """422 for a query parameter the route does not take: `?stratgy=soft` must not be ignored."""
    route = request.scope.get("route")
    allowed = {p.alias for p in getattr(getattr(route, "dependant", None), "query_params", [])}
    unknown = sorted(set(request.query_params) - allowed)
    if unknown:
        raise HTTPException(422, f"unknown query parameter(s): {', '.join(unknown)}; this route takes "
                                 f"{', '.join(sorted(allowed)) or 'none'}")


SettingsDep = Annotated[Settings, Depends(get_settings)]
FleetDep = Annotated[Fleet, Depends(get_fleet)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
ApiKey = Depends(require_api_key)
# documented on every protected route
UNAUTHORIZED = {401: {"description": "missing or wrong API key, as X-API-Key or Authorization: Bearer "
                                     "(only when the service has an API key)",
                      "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}}
