"""`advisor app`: open the Streamlit dashboard (app_streamlit.py) on the shipped data."""
from __future__ import annotations

import argparse
import atexit
import importlib
import importlib.util
import os
import subprocess
import sys

from advisor import REPO_ROOT
from advisor.errors import AdvisorError

APP_PATH = REPO_ROOT / "app_streamlit.py"


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "app",
        help="open the planning dashboard in your browser",
        description="Run the Streamlit dashboard on the shipped measurements and catalog.",
    )
    p.add_argument("--port", type=int, default=8501, help="port to serve on (default 8501)")
    p.add_argument(
        "--host",
        default="localhost",
        help="address to bind (default localhost; anything else exposes the app on your network)",
    )
    p.set_defaults(func=run)


# What the page scripts import: loaded before the server starts, so that the first visitor's
# page does not wait for them (about a second on a 2-core machine).
PAGE_IMPORTS = ("pandas", "plotly.graph_objects", "advisor.app.charts", "advisor.app.explore",
                "advisor.app.gpus", "advisor.app.plan_form", "advisor.app.plan_results",
                "advisor.app.your_data", "advisor.plan", "advisor.claims")


def streamlit_command(port: int, host: str) -> list[str]:
    """The `streamlit run` arguments: localhost, headless, size-limited uploads, no telemetry."""
    from advisor.app.uploads import MAX_UPLOAD_MB

    return [
        "run", str(APP_PATH),
        "--server.address", host,
        "--server.port", str(port),
        "--server.headless", "true",
        "--server.maxUploadSize", str(MAX_UPLOAD_MB),
        "--server.fileWatcherType", "none",
        "--browser.gatherUsageStats", "false",
    ]


def warm_model_cache() -> None:
    """Fit (or read the cached fit) before the server starts, so the first page shows at once,
    and, unless kept or shipped for these data (advisor.shipped), compute its validation report
    in a background process at low priority: only the Explore page needs it (a page that asks
    before it is done waits for that process, advisor.cache.validation_of). Without usable data
    the dashboard still starts and says why."""
    from advisor.cache import load_models, validation_of

    print("preparing the fitted models (cached after the first run)...", flush=True)
    try:
        models = load_models()
    except AdvisorError as exc:
        print(f"warning: {exc}", file=sys.stderr)
        return
    if validation_of(models, compute=False) is not None:  # kept, or shipped for these data
        return
    background = subprocess.Popen(
        [sys.executable, "-m", "advisor", "validate", "--format", "json"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        preexec_fn=(lambda: os.nice(10)) if hasattr(os, "nice") else None)
    atexit.register(background.terminate)


def run(args: argparse.Namespace) -> int:
    if not 1 <= args.port <= 65535:
        raise AdvisorError(f"--port: expected 1..65535, got {args.port}")
    if importlib.util.find_spec("streamlit") is None or importlib.util.find_spec("plotly") is None:
        raise AdvisorError(
            "the dashboard needs streamlit and plotly: pip install -e '.[app]'"
        )
    warm_model_cache()
    for module in PAGE_IMPORTS:
        importlib.import_module(module)
    from streamlit.web import cli as streamlit_cli

    print(f"dashboard: http://{args.host}:{args.port}  (Ctrl+C to stop)", flush=True)
    os.chdir(REPO_ROOT)  # .streamlit/config.toml (theme, server settings) is read from here
    # In this process, not a child: the modules imported above stay loaded for the pages.
    return streamlit_cli.main(streamlit_command(args.port, args.host), prog_name="streamlit",
                              standalone_mode=False) or 0
