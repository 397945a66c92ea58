"""The dashboard for people: ``GET /`` serves one self-contained page (HTML, script and style
served from here; nothing from the internet). The page itself needs no token; it asks for
one, keeps it in the browser's localStorage, and sends it to the /api endpoints."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from starlette.exceptions import HTTPException
from starlette.responses import Response

__all__ = ["STATIC", "make_dashboard_router"]

STATIC = Path(__file__).resolve().parent / "static"
ASSETS = {"dashboard.js": "text/javascript; charset=utf-8", "dashboard.css": "text/css; charset=utf-8"}
HEADERS = {
    "cache-control": "no-cache",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    # everything the page needs comes from this server; no inline script, no framing
    "content-security-policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
}


def make_dashboard_router() -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    async def page() -> HTMLResponse:
        return HTMLResponse((STATIC / "dashboard.html").read_text(encoding="utf-8"), headers=HEADERS)

    @router.get("/dashboard/{asset}")
    async def asset(asset: str) -> Response:
        if asset not in ASSETS:  # a fixed list: no path from the URL ever reaches the file system
            raise HTTPException(404, "no such asset")
        return Response((STATIC / asset).read_bytes(), media_type=ASSETS[asset], headers=HEADERS)

    return router
