"""A holder frozen past its lease (SIGSTOP, a paused container or VM) sends nothing late.

Its process is stopped after `Ledger.begin` gave it the key and its rate limiter let the
create go, but before the create left. Another caller waits out the lease, reconciles
(nothing on the account) and creates the key's user. When the frozen process resumes,
it must not send its create any more: that would be a second user for one key.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sarv_async import AsyncSarvClient
from sarv_async.testing import Emulator
from tests.processes import PROJECT_ROOT

pytestmark = [
    pytest.mark.skipif(sys.platform != "linux", reason="reads /proc"),
    pytest.mark.slow,  # real processes, frozen past real leases
]

LEASE = 1.0

_FROZEN = """
import json, os, signal, sys, anyio
from sarv_async import AsyncSarvClient

class StopAtCreate:  # a rate limiter that freezes its process as its create leaves
    calls = 0
    async def acquire(self):
        StopAtCreate.calls += 1
        if StopAtCreate.calls == 2:  # the first is the list taking the account's baseline
            os.kill(os.getpid(), signal.SIGSTOP)
    def pause(self, seconds):
        pass

async def main(url, ledger):
    async with AsyncSarvClient("demo", "demo-token", base_url=url, limiter=StopAtCreate(),
                               ledger=ledger, settle_delay=0.2) as client:
        client._shared.creates.lease = float(sys.argv[3])
        if sys.argv[4] == "create":
            creds = await client.smtp_users.create(total_limit=7, hourly_limit=3,
                                                   idempotency_key="tenant-42")
        else:
            spec = {"total_limit": 7, "hourly_limit": 3, "key": "tenant-42"}
            async with client.smtp_users.provision([spec], settle_delay=0.2) as run:
                [result] = [result async for result in run]
            creds = result.credentials
    print(json.dumps(creds.smtp_user_name))

anyio.run(main, sys.argv[1], sys.argv[2])
"""


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as file:
        return file.read().rsplit(")", 1)[1].split()[0]


def _create(url: str, ledger: Path) -> str:
    import anyio

    async def main() -> str:
        async with AsyncSarvClient(
            "demo", "demo-token", base_url=url, rate_limit=None, ledger=ledger, settle_delay=0.2
        ) as client:
            assert client._shared.creates is not None
            client._shared.creates.lease = LEASE
            creds = await client.smtp_users.create(
                total_limit=7, hourly_limit=3, idempotency_key="tenant-42"
            )
            return creds.smtp_user_name

    return anyio.run(main)


@pytest.mark.parametrize("how", ["create", "provision"])
def test_a_holder_frozen_past_its_lease_does_not_send_when_it_resumes(
    tmp_path: Path, how: str
) -> None:
    """Frozen before its create left, thawed after another caller made the key's user:
    one user for the key, and both callers get it."""
    ledger = tmp_path / "l.sqlite3"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SARV_", "SENDCLEAN_"))}
    env["PYTHONPATH"] = str(PROJECT_ROOT)
    with Emulator() as emu:
        argv = [sys.executable, "-c", _FROZEN, emu.base_url, str(ledger), str(LEASE), how]
        frozen = subprocess.Popen(  # noqa: S603 - this interpreter, fixed arguments
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        try:
            deadline = time.monotonic() + 30
            while _state(frozen.pid) != "T":
                assert frozen.poll() is None, frozen.communicate()
                assert time.monotonic() < deadline, "the process never froze"
                time.sleep(0.01)
            mine = _create(emu.base_url, ledger)  # waits out the frozen holder's lease
            assert len(emu.users()) == 1
        finally:
            frozen.send_signal(signal.SIGCONT)
        out, err = frozen.communicate(timeout=60)
        assert frozen.returncode == 0, err.decode()[-2000:]
        users = [user["smtp_user_name"] for user in emu.users()]
    assert users == [mine], "the thawed process created a second user for the key"
    assert json.loads(out) == mine
