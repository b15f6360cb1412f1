"""A process racing others on one ledger store; run by the contract tests' two-process test.

``python -m tests.ledger._contender OPENER ADDRESS ACCOUNT NAME KEYS USERS`` prints
``ready``, waits for a line on stdin, then, with 8 tasks at once, records a baseline and
begins every key ``k0..k{KEYS-1}``; for each key it was given, it claims the user
``u{i % USERS}``. It prints one JSON line: what it recorded, sent and claimed.
"""

from __future__ import annotations

import json
import sys

import anyio

from tests.ledger.conftest import open_store


async def contend(
    opener: str, address: str, account: str, name: str, keys: int, users: int
) -> dict[str, object]:
    ledger = open_store(opener, address)
    sends: list[str] = []
    claims: dict[str, str] = {}
    try:
        recorded = await ledger.record_baseline(account, [f"base-{name}"])
        queue = list(range(keys))

        async def worker() -> None:
            while queue:
                i = queue.pop(0)
                key = f"k{i}"
                begun = await ledger.begin(
                    account, key, total_limit=100, hourly_limit=10, holder=f"{name}-{i}", lease=60
                )
                if begun.decision == "send":
                    sends.append(key)
                    claims[key] = (await ledger.claim(account, key, f"u{i % users}")).value

        async with anyio.create_task_group() as tg:
            for _ in range(8):
                tg.start_soon(worker)
    finally:
        await ledger.aclose()
    return {"baseline": recorded, "sends": sends, "claims": claims}


def main() -> None:
    opener, address, account, name, keys, users = sys.argv[1:]
    print("ready", flush=True)
    sys.stdin.readline()
    result = anyio.run(contend, opener, address, account, name, int(keys), int(users))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
