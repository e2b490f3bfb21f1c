"""`run.py dashboard`: a live web dashboard of every stream, and Prometheus metrics, on one port.

Only the options are defined here, so `run.py dashboard --help` stays quick; the web stack is
imported when the server starts (streamer/apps/dashboard/server.py).
"""

from __future__ import annotations

import argparse

from configs.settings import add_config_arguments, from_args, replace
from streamer.runtime.logs import setup_logging


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--host", default=None,
                        help="address to listen on (default dashboard.host, 127.0.0.1; elsewhere set dashboard.token)")
    parser.add_argument("--port", type=int, default=None, help="port to listen on (default dashboard.port, 8080)")


def main(args: argparse.Namespace) -> int:
    setup_logging("dashboard")
    config = from_args(args)
    changes = {key: value for key, value in (("host", args.host), ("port", args.port)) if value is not None}
    if changes:
        config = replace(config, "dashboard", **changes)
    from streamer.apps.dashboard.server import serve

    return serve(config)
