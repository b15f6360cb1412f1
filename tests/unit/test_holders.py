"""Who holds a key: a dead holder's hold ends at once, a live one's never does."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from sarv_async._idempotency import holder_is_dead, new_holder


def _free_pid() -> int:
    """A process id that no process of this PID namespace has now."""
    for pid in range(300, 30000):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except OSError:
            continue
    raise AssertionError("no free process id")


@pytest.mark.slow
def test_a_holder_of_a_process_that_ended_is_dead() -> None:
    """A holder of this host whose process is gone (kill -9) counts as dead."""
    proc = subprocess.run(
        [sys.executable, "-c", "from sarv_async._idempotency import new_holder as h; print(h())"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert holder_is_dead(proc.stdout.strip())


def test_this_process_and_other_hosts_count_as_alive() -> None:
    """Our own holders, and those of another host, are never taken for dead."""
    assert not holder_is_dead(new_holder())
    assert not holder_is_dead(f"another-host:{_free_pid()}:0123456789abcdef")
    assert not holder_is_dead(None)


def _unshare_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-pf", "true"], capture_output=True, check=False)  # noqa: S607
    return probe.returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(
    sys.platform != "linux" or not _unshare_works(),
    reason="needs Linux and 'unshare -pf' (root) to start a process in another PID namespace",
)
def test_a_live_holder_in_another_pid_namespace_is_not_taken_for_dead() -> None:
    """Containers sharing the host name (host networking) have their own process ids.

    A holder made in another PID namespace names a process id that may be free here:
    it must still count as alive, or its live create would be expired and sent twice.
    """
    pid = _free_pid()
    # In a new PID namespace ids are handed out from 1: the shell is 1, each /bin/true
    # takes the next, so the Python process gets ``pid``. It prints its holder and waits.
    script = (
        f"i=2; while [ $i -lt {pid} ]; do /bin/true; i=$((i+1)); done; "
        f"{sys.executable} -c 'import os, sys; from sarv_async._idempotency import new_holder; "
        "print(os.getpid(), new_holder(), flush=True); sys.stdin.readline()'; true"
    )
    with subprocess.Popen(  # noqa: S603
        ["unshare", "-pf", "sh", "-c", script],  # noqa: S607
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=os.getcwd(),
    ) as proc:
        assert proc.stdin is not None
        assert proc.stdout is not None
        try:
            inner_pid, holder = proc.stdout.readline().split()
            assert int(inner_pid) == pid  # the same number as a free id of this namespace
            assert not holder_is_dead(holder), holder
        finally:
            proc.stdin.close()
            proc.wait(timeout=10)
