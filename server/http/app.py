"""The Starlette application of the HTTP door: routes, error answers, auth, CORS."""

from __future__ import annotations

from importlib import metadata

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from stepstream.server.api.auth import anonymous, authenticator_for
from stepstream.server.core.app import Core
from stepstream.server.core.errors import StepstreamError
from stepstream.server.http import assistants, crons, inspector, runs, store, threads, ui
from stepstream.server.http.common import json
from stepstream.server.http.errors import HttpError, error_response, on_core_error, on_http_error
from stepstream.server.http.middleware import (
    AuthMiddleware,
    InternalErrorMiddleware,
    ReplicaHeaderMiddleware,
)


async def ok(request: Request) -> Response:
    return json({"ok": True})


async def info(request: Request) -> Response:
    try:
        version = metadata.version("stepstream")
    except metadata.PackageNotFoundError:
        version = "0"
    return json(
        {
            "version": version,
            "server": "stepstream",
            "langgraph_py_version": metadata.version("langgraph"),
            "flags": {"assistants": True, "crons": True, "langsmith": False},
        }
    )


async def on_starlette_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, str(exc.detail))


def build_app(core: Core) -> Starlette:
    settings = core.settings
    middleware = [Middleware(ReplicaHeaderMiddleware, replica=settings.replica)]
    origins = list(settings.http_cors_origins)
    if origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=origins,
                allow_methods=["*"],
                allow_headers=["*"],
                expose_headers=["Location", "Content-Location", "X-Stepstream-Replica"],
                # Credentials ride in headers (x-api-key, authorization), never cookies.
                allow_credentials=False,
                # Chrome's Private Network Access: a hosted page (LangGraph Studio) calling a
                # server on localhost asks first.
                allow_private_network=settings.http_cors_private_network,
            )
        )
    middleware.append(
        Middleware(AuthMiddleware, authenticator=authenticator_for(settings), anonymous=anonymous(settings))
    )
    middleware.append(Middleware(InternalErrorMiddleware))
    app = Starlette(
        routes=[
            Route("/ok", ok, methods=["GET"]),
            Route("/info", info, methods=["GET"]),
            *assistants.ROUTES,
            *threads.ROUTES,
            *crons.ROUTES,
            *runs.ROUTES,
            *store.ROUTES,
            *inspector.ROUTES,
            *ui.ROUTES,
        ],
        middleware=middleware,
        exception_handlers={
            HttpError: on_http_error,
            StepstreamError: on_core_error,
            HTTPException: on_starlette_error,
        },
    )
    app.state.core = core
    return app
