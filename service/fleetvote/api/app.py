"""The FastAPI application: ``create_app(settings)``; the lifespan owns the fleet."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from fastapi import Depends, FastAPI

from .. import __version__
from ..ensemble import load_ensemble
from ..fleet.manager import Fleet
from ..metrics import Metrics
from ..settings import Settings
from .deps import no_unknown_query
from .limits import UploadLimit
from .requestlog import RequestLog
from .routes import classify, fleet as fleet_routes, health, ui

log = logging.getLogger("fleetvote.api")


def create_app(settings: Settings | None = None, fleet_factory=None, virtual=None) -> FastAPI:
    """``virtual``: a VirtualFleet started and stopped by the lifespan, so that its processes end
    with the application even when the server exits on a signal."""
    settings = settings or Settings()
    # validated before the server starts: a bad ensemble or model file stops it with a message
    ensemble = load_ensemble(settings.ensemble, settings.zoo)
    metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        if virtual is not None:
            for b in await asyncio.to_thread(virtual.start):
                log.info("virtual board started", extra={"board": str(b.link or b.port), "model": b.model_id,
                                                         "pid": b.process.pid})
        try:
            fleet = (fleet_factory or Fleet)(settings, ensemble, metrics)
            app.state.fleet = fleet
            await fleet.start()
            log.info("fleet started", extra={"boards": len(fleet.boards), "members": len(ensemble.members)})
            try:
                yield
            finally:
                await fleet.stop()
        finally:
            if virtual is not None:
                await asyncio.to_thread(virtual.stop)
                log.info("virtual boards stopped")

    app = FastAPI(
        title="fleetvote", version=__version__, lifespan=lifespan,
        dependencies=[Depends(no_unknown_query)],
        description="A CIFAR-10 classifier made of several cheap STM32 boards that vote. POST an image to "
                    "/classify; GET /boards shows the fleet.")
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.ensemble = ensemble
    app.add_middleware(UploadLimit, limit=settings.upload_limit)
    app.add_middleware(RequestLog)  # outermost: a refused upload is logged with its request id too
    app.include_router(classify.router)
    app.include_router(fleet_routes.router)
    app.include_router(health.router)
    app.include_router(ui.router)
    return app
