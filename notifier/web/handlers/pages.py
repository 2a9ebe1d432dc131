"""The console's page, script, style and PWA files, and the API's OpenAPI description."""

from __future__ import annotations

from aiohttp import web

from notifier import assets
from notifier.web import openapi

_REVALIDATE = {"Cache-Control": "no-cache"}


def _asset(text: str, content_type: str, **headers: str) -> web.Response:
    return web.Response(text=text, content_type=content_type, headers={**_REVALIDATE, **headers})


async def index(_request: web.Request) -> web.Response:
    return _asset(assets.INDEX_HTML, "text/html")


async def script(_request: web.Request) -> web.Response:
    return _asset(assets.CONSOLE_JS, "text/javascript")


async def style(_request: web.Request) -> web.Response:
    return _asset(assets.CONSOLE_CSS, "text/css")


async def manifest(_request: web.Request) -> web.Response:
    return _asset(assets.MANIFEST, "application/manifest+json")


async def service_worker(_request: web.Request) -> web.Response:
    # Served from / so that it may control the whole console.
    return _asset(assets.SERVICE_WORKER, "text/javascript", **{"Service-Worker-Allowed": "/"})


async def icon(_request: web.Request) -> web.Response:
    return _asset(assets.ICON_SVG, "image/svg+xml")


async def openapi_doc(_request: web.Request) -> web.Response:
    return web.json_response(openapi.document(), headers=_REVALIDATE)
