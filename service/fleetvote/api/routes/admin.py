"""POST /admin/reload: read the ensemble file again without a restart (as SIGHUP does, api/reload.py).

Authenticated by its own key, ``X-Admin-Key`` (``FLEETVOTE_ADMIN_KEY``): the API key lets a client
classify, this one changes what the fleet answers. Without an admin key the route is refused (403)
and only the signal reloads. A bad file is ConfigError (422, from the application's handlers) and
the ensemble in service is kept."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Security
from fastapi.security import APIKeyHeader

from ..deps import FleetDep, SettingsDep
from ..schemas import ErrorBody, ReloadResponse, iso_time

admin_key_header = APIKeyHeader(name="X-Admin-Key", auto_error=False,
                                description="the admin key the service was started with (FLEETVOTE_ADMIN_KEY)")


async def require_admin_key(settings: SettingsDep,
                            key: Annotated[str | None, Security(admin_key_header)] = None) -> None:
    if settings.admin_key is None:
        raise HTTPException(403, "reloading over HTTP needs an admin key: start the service with "
                                 "FLEETVOTE_ADMIN_KEY set, or send the process SIGHUP")
    if key is None or not secrets.compare_digest(key.encode("utf-8", "surrogateescape"),
                                                 settings.admin_key.encode("utf-8", "surrogateescape")):
        raise HTTPException(401, "missing or wrong X-Admin-Key header", headers={"WWW-Authenticate": "ApiKey"})


router = APIRouter(tags=["admin"], dependencies=[Depends(require_admin_key)])


@router.post("/admin/reload", response_model=ReloadResponse,
             responses={401: {"model": ErrorBody, "description": "missing or wrong X-Admin-Key"},
                        403: {"model": ErrorBody, "description": "the service has no admin key"},
                        422: {"model": ErrorBody, "description": "the ensemble file is bad; the old one is kept"}},
             summary="Reload the ensemble file: members, weights, strategy, quorum; boards keep their links")
async def reload(fleet: FleetDep, settings: SettingsDep) -> ReloadResponse:
    e, ms = await fleet.reload()
    return ReloadResponse(version=e.version, loaded_at=iso_time(e.loaded_at), reload_ms=round(ms, 3),
                          strategy=e.strategy, quorum=fleet.quorum_of(e), members=[m.id for m in e.members])
