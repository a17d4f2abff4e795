"""CLI wiring of ``gsgroup view RUN [--port 8080] [--host 127.0.0.1] [--device cpu|cuda|auto]``."""

from __future__ import annotations

import argparse

from ..errors import InputError
from ..options import bounded
from ..train.device import resolve_device
from .server import HOST, PORT


def cmd_view(args) -> int:
    """Handler of ``gsgroup view``: validate the device, run and port, then serve until Ctrl-C."""
    device = resolve_device(args.device)  # a missing GPU or gsplat is one line, before any data is read
    try:
        import viser  # noqa: F401
    except ImportError:
        raise InputError("gsgroup view needs viser: pip install 'gsgroup[viewer]' (or pip install viser)") from None
    from .server import serve

    return serve(args.run, host=args.host, port=args.port, device=str(device))


def add_view_command(subparsers) -> None:
    """Register ``gsgroup view`` on the top-level subparsers."""
    p = subparsers.add_parser(
        "view",
        help="interactive web viewer: select, hide, isolate, edit and save objects",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("run", help="a segmented run folder (point_cloud.ply + classifier.pt or labels.npy)")
    p.add_argument("--port", type=bounded(int, min=0, max=65535), default=PORT, help="port to serve on")
    p.add_argument("--host", default=HOST, help="address to bind (only this one)")
    p.add_argument(
        "--device",
        default="auto",
        help="where restyle renders and fits: cpu, cuda, cuda:N or auto (CUDA when torch sees "
        "a GPU and gsplat is installed: pip install 'gsgroup[cuda]')",
    )
    p.set_defaults(func=cmd_view)
