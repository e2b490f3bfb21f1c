"""The dashboard's web server: the page, its event stream, the preview thumbnails and /metrics.

A thread subscribes to the label, event, stats and preview topics at `endpoints.labels` (a CURVE
client when security is on) and feeds the state and the metrics; it never waits for a browser.
Uvicorn serves a Starlette app: `/` and `/static/*` (files shipped inside the package, no CDN),
`/events` (Server-Sent Events: the changes since this browser's last update, at most
`dashboard.updates_per_s` per stream), `/preview/<stream>` (the latest JPEG) and `/metrics`.
With `dashboard.token` set, every request needs the token (`?token=`, `Authorization: Bearer`,
or the cookie the server sets once either was accepted).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import threading

import uvicorn
import zmq
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from configs.settings import ActionableError, Config, Dashboard
from streamer.apps.dashboard.metrics import DashboardMetrics
from streamer.apps.dashboard.state import DashboardState
from streamer.transport import wire
from streamer.transport.sockets import bind_problem, is_loopback, make_socket

log = logging.getLogger("dashboard")

TOPICS = (b"label/", b"event/", b"stats/", b"preview/")
COOKIE = "streamer_dashboard_token"
KEEPALIVE_S = 15.0  # a comment line this often keeps proxies from closing a quiet event stream


def subscribe(config: Config, state: DashboardState, metrics: DashboardMetrics, stop: threading.Event) -> None:
    """Receive everything published at endpoints.labels into the state and the metrics until `stop`."""
    context = zmq.Context()
    socket = make_socket(context, zmq.SUB, config.endpoints.labels, bind=False, security=config.security,
                         server_curve=False, hwm=100000)
    for topic in TOPICS:
        socket.setsockopt(zmq.SUBSCRIBE, topic)
    try:
        while not stop.is_set():
            if socket.poll(100):
                for message, received in wire.received_messages(socket, limit=1000):
                    state.take(message, received)
                    metrics.observe(message, received)
    finally:
        socket.close()
        context.term()


class TokenGate:
    """ASGI middleware: with a token configured, a request without it gets 401 and nothing else."""

    def __init__(self, app, token: str):
        self.app, self.token = app, token

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not self.token:
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        header = request.headers.get("authorization", "")
        offered = {
            "query": request.query_params.get("token"),
            "header": header[len("Bearer "):] if header.startswith("Bearer ") else None,
            "cookie": request.cookies.get(COOKIE),
        }
        accepted = [way for way, value in offered.items() if value and hmac.compare_digest(value, self.token)]
        if not accepted:
            response = PlainTextResponse("a token is needed: open /?token=... (see dashboard.token)", status_code=401,
                                         headers={"WWW-Authenticate": "Bearer"})
            await response(scope, receive, send)
            return
        if accepted == ["query"] and scope["path"] == "/":
            # Keep the token out of the address bar and history: a cookie carries it from now on.
            response = RedirectResponse("/", status_code=303)
            response.set_cookie(COOKIE, self.token, httponly=True, samesite="strict")
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def build_app(state: DashboardState, metrics: DashboardMetrics, settings: Dashboard,
              stopping=lambda: False) -> TokenGate:
    """The ASGI app; `stopping()` turns True when the server shuts down, ending the event streams."""
    static = StaticFiles(packages=[("streamer.apps.dashboard", "static")])
    interval_s = 1.0 / settings.updates_per_s

    async def index(request: Request) -> Response:
        return await static.get_response("index.html", request.scope)

    async def events(request: Request) -> Response:
        async def stream():
            seen: dict = {}
            quiet_s = 0.0
            yield "retry: 2000\n\n"
            while not stopping():
                changed = state.changes(seen)
                if changed:
                    quiet_s = 0.0
                    yield f"data: {json.dumps(changed, separators=(',', ':'))}\n\n"
                elif quiet_s >= KEEPALIVE_S:
                    quiet_s = 0.0
                    yield ": keepalive\n\n"
                # The newest state is taken after the sleep: a browser that reads slowly gets fewer,
                # newer updates instead of a backlog.
                await asyncio.sleep(interval_s)
                quiet_s += interval_s

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    async def preview(request: Request) -> Response:
        jpeg = state.preview(request.path_params["stream"])
        if jpeg is None:
            return PlainTextResponse("no preview yet", status_code=404)
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    async def prometheus(request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app = Starlette(routes=[
        Route("/", index),
        Route("/events", events),
        Route("/preview/{stream}", preview),
        Route("/metrics", prometheus),
        Mount("/static", app=static, name="static"),
    ])
    return TokenGate(app, settings.token)


def page_address(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    return f"http://{'[' + shown + ']' if ':' in shown else shown}:{port}/"


def exposure_warning(settings: Dashboard) -> str | None:
    """What to tell the user when the dashboard is reachable beyond this machine without a token."""
    if settings.token or is_loopback(f"tcp://{settings.host}:{settings.port}"):
        return None
    return (f"the dashboard listens on {settings.host or 'every interface'} WITHOUT a token: anyone who can reach "
            f"it sees every stream and its metrics. Set one in a config file ([dashboard] token = \"...\"), then "
            f"open /?token=... once")


def serve(config: Config) -> int:
    settings = config.dashboard
    if settings.updates_per_s <= 0:
        raise ActionableError(f"dashboard.updates_per_s must be above 0, got {settings.updates_per_s}")
    problem = bind_problem(f"tcp://{settings.host}:{settings.port}")
    if problem is not None:
        raise ActionableError(f"dashboard: cannot listen on {settings.host}:{settings.port} ({problem}); is another "
                              f"dashboard running? Pick another port with --port or --set dashboard.port=PORT")
    warning = exposure_warning(settings)
    if warning:
        log.warning("%s", warning)
    state = DashboardState(settings)
    metrics = DashboardMetrics(state)
    stop = threading.Event()
    server: uvicorn.Server | None = None
    app = build_app(state, metrics, settings, stopping=lambda: stop.is_set() or bool(server and server.should_exit))
    server = uvicorn.Server(uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning",
                                           timeout_graceful_shutdown=2, access_log=False))
    subscriber = threading.Thread(target=subscribe, args=(config, state, metrics, stop), name="subscriber",
                                  daemon=True)
    subscriber.start()
    address = page_address(settings.host, settings.port)
    token_hint = "?token=<dashboard.token>" if settings.token else ""
    log.info("dashboard on %s%s (labels from %s; Prometheus metrics at %smetrics)", address, token_hint,
             config.endpoints.labels, address)
    try:
        server.run()  # handles Ctrl-C and SIGTERM itself
    finally:
        stop.set()
        subscriber.join(timeout=5)
    return 0
