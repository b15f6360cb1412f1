"""Holders: an id per attempt on an idempotency key, and whether its process still runs."""

from __future__ import annotations

import os
import socket
import sys

__all__ = ["holder_is_dead", "new_holder"]


def _host_id() -> str:
    """This host's name, and on Linux its PID namespace: what a process id is unique in.

    Containers sharing the host name (host networking) each have their own process ids,
    so a process id alone says nothing about a holder of another PID namespace.
    """
    try:
        namespace = os.readlink("/proc/self/ns/pid")  # e.g. "pid:[4026531836]"
    except OSError:
        return socket.gethostname()
    return f"{socket.gethostname()}/{namespace.removeprefix('pid:').strip('[]')}"


_HOST = _host_id()


def new_holder() -> str:
    """An id for one attempt: host (and PID namespace), process and a random part."""
    return f"{_HOST}:{os.getpid()}:{os.urandom(8).hex()}"  # 64 random bits


def holder_is_dead(holder: str | None) -> bool:
    """Whether ``holder`` is an attempt of a process of this host (and PID namespace)
    that no longer runs.

    Its hold can then end at once instead of when its lease runs out (a rerun after
    ``kill -9`` need not wait). Anything unsure (another host, a process id now used by
    another process, no way to ask) counts as alive: its lease still bounds the wait.
    """
    if holder is None or sys.platform == "win32":
        return False
    parts = holder.rsplit(":", 2)
    if len(parts) != 3 or parts[0] != _HOST or not parts[1].isdigit():
        return False
    pid = int(parts[1])
    if pid == os.getpid() or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False
