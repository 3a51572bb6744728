"""The inspector page at /ui/: its committed static bundle (stepstream.inspector), public.

Only the shell is public (the auth middleware lets /ui/ through): every figure on the page comes
from a data call that carries the caller's own key or token.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from stepstream.inspector import STATIC

PREFIX = "/ui"


def is_ui_path(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


async def to_slash(request: Request) -> Response:
    # The page's assets are relative (app.js, app.css): it must be opened as /ui/.
    return RedirectResponse(PREFIX + "/", status_code=308)


ROUTES = [
    Route(PREFIX, to_slash, methods=["GET", "HEAD"]),
    Mount(PREFIX, app=StaticFiles(directory=STATIC, html=True), name="ui"),
]
