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
from starlette.requests import ClientDisconnect

from .. import __version__
from ..ensemble import load_ensemble
from ..errors import ConfigError, Overloaded, QuorumLost
from ..fleet.manager import Fleet
from ..images import ImageError
from ..metrics import Metrics
from ..settings import Settings
from .deps import no_unknown_query
from .limits import UploadLimit
from .reload import reload_on_sighup
from .requestlog import RequestCount, RequestLog
from .routes import admin, classify, fleet as fleet_routes, health, oip, ui

log = logging.getLogger("fleetvote.api")


async def _bad_image(_request: Request, exc: ImageError) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=exc.status)  # 413, 415 or 422: the decoder knows


async def _overloaded(_request: Request, exc: Overloaded) -> JSONResponse:
    return JSONResponse({"detail": f"{exc}; retry shortly"}, status_code=503, headers={"Retry-After": str(exc.retry_after_s)})


async def _quorum_lost(_request: Request, exc: QuorumLost) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=503)


async def _bad_config(_request: Request, exc: ConfigError) -> JSONResponse:
    # only a reload raises it during a request: the file is refused, the ensemble in service kept
    return JSONResponse({"detail": f"{exc}; the ensemble in service is kept"}, status_code=422)


async def _client_gone(_request: Request, _exc: ClientDisconnect) -> JSONResponse:
    # the client hung up before its body was complete: nobody reads this answer, but the request
    # is counted and logged as what it was (nginx's 499, "client closed request"), not as a 500
    return JSONResponse({"detail": "the client closed the connection before its request was complete"},
                        status_code=499)


ERROR_HANDLERS = {ImageError: _bad_image, Overloaded: _overloaded, QuorumLost: _quorum_lost,
                  ConfigError: _bad_config, ClientDisconnect: _client_gone}


def create_app(settings: Settings | None = None, fleet_factory=None,
               board_supply: contextlib.AbstractAsyncContextManager | None = None) -> FastAPI:
    """``board_supply``: an async context manager that the lifespan enters before the fleet starts
    and leaves after it has stopped: whatever brings up boards for the fleet to find (``fleetvote
    serve --virtual`` passes the test bed's virtual boards), so that they end with the application
    even when the server exits on a signal. The service itself knows boards only by their links."""
    settings = settings or Settings()
    # validated before the server starts: a bad ensemble or model file stops it with a message
    ensemble = load_ensemble(settings.ensemble, settings.zoo)
    metrics = Metrics(__version__)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        async with board_supply or contextlib.nullcontext():
            fleet = (fleet_factory or Fleet)(settings, ensemble, metrics)
            app.state.fleet = fleet
            metrics.fleet = fleet  # the boards' figures are read at every scrape
            await fleet.start()
            log.info("fleet started", extra={"boards": len(fleet.boards), "members": len(ensemble.members)})
            try:
                with reload_on_sighup(fleet):
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
    # no app.state.ensemble: a reload replaces the fleet's (app.state.fleet.ensemble), the one to read
    routers = (classify.router, fleet_routes.router, health.router, ui.router, *oip.routers, admin.router)
    app.add_middleware(UploadLimit, limit=settings.upload_limit, body_timeout_s=settings.body_timeout_s)
    # outside the limit, so that its refusals are counted too, under the route they were meant for
    app.add_middleware(RequestCount, metrics=metrics, paths=[r.path for router in routers for r in router.routes])
    app.add_middleware(RequestLog)  # outermost: a refused upload is logged with its request id too
    for router in routers:
        app.include_router(router)
    return app
