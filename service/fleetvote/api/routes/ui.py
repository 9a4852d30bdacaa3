"""GET / : the dashboard (plain HTML, CSS and JS from ``api/static/``, no build step).

The page itself is public: it holds no data. What it shows comes from GET /boards, /ensemble,
/readyz and POST /classify, which ask for the API key when one is set; the page then asks the
user for it, keeps it in sessionStorage and sends it as ``X-API-Key``.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

STATIC = Path(__file__).resolve().parents[1] / "static"
# The files the page may load, fixed at import: a name that is not in this table is a 404, so no
# request path ever reaches the file system (no traversal, no directory listing).
_MEDIA = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
FILES = {p.name: p for p in sorted(STATIC.iterdir()) if p.suffix in _MEDIA} if STATIC.is_dir() else {}
# Everything the page needs comes from the service itself; data: and blob: are the previews of
# dropped images.
_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
                               "script-src 'self'; connect-src 'self'; object-src 'none'; "
                               "base-uri 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
}

router = APIRouter(tags=["ui"], include_in_schema=False)


def _file(name: str) -> FileResponse:
    path = FILES.get(name)
    if path is None:
        raise HTTPException(404, f"no file {name!r} in the dashboard")
    return FileResponse(path, media_type=_MEDIA[path.suffix], headers=_HEADERS)


@router.get("/", response_class=FileResponse, summary="The dashboard")
async def index() -> FileResponse:
    return _file("index.html")


@router.get("/ui/{name}", response_class=FileResponse, summary="The dashboard's scripts, styles and icon")
async def asset(name: str) -> FileResponse:
    return _file(name)
