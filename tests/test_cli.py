"""The `advisor` entry point itself: what every subcommand shares."""
from __future__ import annotations

import subprocess
import sys

from advisor.cli import build_parser


def test_the_documented_subcommands_are_registered():
    """The README's CLI reference documents exactly these."""
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert set(sub.choices) == {"workload", "catalog", "probe", "fit", "validate", "predict",
                                "recommend", "check-claim", "app", "loadtest", "serve"}


def test_a_closed_pipe_ends_quietly():
    """`advisor catalog list | head -1`: the reader is gone before the output; no traceback."""
    proc = subprocess.Popen([sys.executable, "-m", "advisor", "catalog", "list", "--format", "json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait() == 141
    assert "Traceback" not in stderr and "Error" not in stderr


def test_every_subcommand_help_renders_cleanly():
    """argparse %-formats argument help but not descriptions: a stray %% shows up doubled."""
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for name, parser in sub.choices.items():
        text = parser.format_help()
        assert "%%" not in text, name
