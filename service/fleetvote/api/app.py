"""The FastAPI application: ``create_app(settings)``; the lifespan owns the fleet.

The error tree (``errors.py``) becomes HTTP here and only here: ``ERROR_HANDLERS`` answers the
errors a request can end in (a bad upload, a full fleet, a lost quorum) with their status; routes
catch none, and any other exception stays a 500. Requests are counted by one middleware
(``requestlog.RequestCount``), whoever answered them."""

from __future__ import annotations

import contextlib
import logging

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from .. import __version__
from ..ensemble import load_ensemble
from ..errors import Overloaded, QuorumLost
from ..fleet.manager import Fleet
from ..images import ImageError
from ..metrics import Metrics
from ..settings import Settings
from .deps import no_unknown_query
from .limits import UploadLimit
from .requestlog import RequestCount, RequestLog
from .routes import classify, fleet as fleet_routes, health, ui

log = logging.getLogger("fleetvote.api")


async def _bad_image(_request: Request, exc: ImageError) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=exc.status)  # 413, 415 or 422: the decoder knows


async def _overloaded(_request: Request, exc: Overloaded) -> JSONResponse:
    return JSONResponse({"detail": f"{exc}; retry shortly"}, status_code=503, headers={"Retry-After": "1"})


async def _quorum_lost(_request: Request, exc: QuorumLost) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=503)


ERROR_HANDLERS = {ImageError: _bad_image, Overloaded: _overloaded, QuorumLost: _quorum_lost}


def create_app(settings: Settings | None = None, fleet_factory=None,
               board_supply: contextlib.AbstractAsyncContextManager | None = None) -> FastAPI:
    """``board_supply``: an async context manager that the lifespan enters before the fleet starts
    and leaves after it has stopped: whatever brings up boards for the fleet to find (``fleetvote
    serve --virtual`` passes the test bed's virtual boards), so that they end with the application
    even when the server exits on a signal. The service itself knows boards only by their links."""
    settings = settings or Settings()
    # validated before the server starts: a bad ensemble or model file stops it with a message
    ensemble = load_ensemble(settings.ensemble, settings.zoo)
    metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        async with board_supply or contextlib.nullcontext():
            fleet = (fleet_factory or Fleet)(settings, ensemble, metrics)
            app.state.fleet = fleet
            await fleet.start()
            log.info("fleet started", extra={"boards": len(fleet.boards), "members": len(ensemble.members)})
            try:
                yield
            finally:
                await fleet.stop()

    app = FastAPI(
        title="fleetvote", version=__version__, lifespan=lifespan,
        dependencies=[Depends(no_unknown_query)], exception_handlers=ERROR_HANDLERS,
        description="A CIFAR-10 classifier made of several cheap STM32 boards that vote. POST an image to "
                    "/classify; GET /boards shows the fleet.")
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.ensemble = ensemble
    routers = (classify.router, fleet_routes.router, health.router, ui.router)
    app.add_middleware(UploadLimit, limit=settings.upload_limit, body_timeout_s=settings.body_timeout_s)
    # outside the limit, so that its refusals are counted too, under the route they were meant for
    app.add_middleware(RequestCount, metrics=metrics, paths=[r.path for router in routers for r in router.routes])
    app.add_middleware(RequestLog)  # outermost: a refused upload is logged with its request id too
    for router in routers:
        app.include_router(router)
    return app
