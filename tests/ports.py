"""A free TCP port for a server a test starts (the dashboard, Ray Serve, a stub endpoint)."""
from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing on `host` listens on now (the OS's pick; free until someone binds it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]
