"""The `serve` command: the model as a Ray Serve application (ray is imported only when the command runs)."""

from __future__ import annotations

from ..core.errors import FerError


def cmd_serve(args) -> int:
    try:
        from ..serving.deployment import run_server
    except ImportError as exc:
        if (exc.name or "").split(".")[0] in ("ray", "starlette"):
            raise FerError("Serving needs Ray Serve: pip install 'fer-realtime[serving]'.") from None
        raise
    run_server(host=args.host, port=args.port, replicas=args.replicas, address=args.address, model=args.model,
               temp_dir=args.temp_dir)
    return 0


def add_serve(sub) -> None:
    """The `serve` command."""
    p = sub.add_parser("serve", help="serve the model over HTTP with Ray Serve (/analyze, /classify, /info)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s; 0.0.0.0 for all)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--replicas", type=int, default=1, help="model replicas, each a process with the model loaded")
    p.add_argument("--address", default=None, metavar="ADDR",
                   help="join this Ray cluster (e.g. auto, after `ray start --head`); default: a local Ray instance")
    p.add_argument("--model", default=None, help="a fer-realtime .keras file (default: the shipped model)")
    p.add_argument("--temp-dir", default=None, metavar="DIR",
                   help="the local Ray instance's session folder (default: Ray's, /tmp/ray); absolute path")
    p.set_defaults(func=cmd_serve)
