"""SIGHUP reloads the ensemble file (``Fleet.reload``), as POST /admin/reload does (routes/admin.py).

The lifespan holds ``reload_on_sighup(fleet)`` while the fleet runs. The handler only starts the
reload on the event loop; a bad file is logged as an error and the ensemble in service kept. A
signal handler can only be set from the main thread: a service run in another thread (the test
harness's) reloads over HTTP only."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from ..errors import ConfigError
from ..fleet.manager import Fleet

log = logging.getLogger("fleetvote.api")


async def reload_logged(fleet: Fleet) -> None:
    try:
        await fleet.reload()  # which logs the new version
    except ConfigError as exc:
        log.error("reload refused, the ensemble in service is kept: %s", exc)


@contextlib.contextmanager
def reload_on_sighup(fleet: Fleet):
    loop = asyncio.get_running_loop()
    running: set[asyncio.Task] = set()  # a reference to each task, until it is done

    def on_hup() -> None:
        task = loop.create_task(reload_logged(fleet), name="reload on SIGHUP")
        running.add(task)
        task.add_done_callback(running.discard)

    try:
        loop.add_signal_handler(signal.SIGHUP, on_hup)
    except (ValueError, RuntimeError, NotImplementedError, AttributeError):  # not the main thread; no SIGHUP
        log.debug("no SIGHUP handler in this thread: reload with POST /admin/reload")
        yield
        return
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGHUP)
        for task in running:
            task.cancel()
