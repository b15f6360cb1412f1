"""What only the Redis ledger promises: its keys, and failing fast when Redis does not answer."""

from __future__ import annotations

import contextlib
import os
import signal

import anyio
import anyio.abc
import anyio.lowlevel
import pytest

from sarv_async import LedgerError
from sarv_async._ledger import account_id, open_ledger
from sarv_async._ledger_redis import RedisLedger
from tests.redis_server import RedisServer
from tests.test_limiter_redis import redis_dump

pytestmark = pytest.mark.anyio

ACCOUNT = account_id("https://api.example.com/v1.0/", "acme")


async def test_an_account_s_keys_share_a_hash_tag_and_never_expire(
    redis_server: RedisServer,
) -> None:
    """Four keys per account, one hash tag, no TTL: a ledger does not forget."""
    ledger = open_ledger(redis_server.url)
    assert isinstance(ledger, RedisLedger)
    await ledger.record_baseline(ACCOUNT, ["smtp1"])
    await ledger.begin(ACCOUNT, "k", total_limit=1, hourly_limit=1, holder="h", lease=60)
    await ledger.claim(ACCOUNT, "k", "smtp2")
    await ledger.aclose()
    dump = await redis_dump(redis_server.url)
    assert sorted(k.rpartition(":")[2] for k in dump) == [
        "baseline",
        "baseline-at",
        "entries",
        "owners",
    ]
    assert all(k.startswith(f"sarv:{{{ACCOUNT}}}:ledger:") for k in dump)
    for key in dump:
        assert redis_server.command("PTTL", key) == b":-1\r\n"


async def test_an_unreachable_redis_is_a_ledger_error_at_once() -> None:
    """Nothing listening: LedgerError naming where, without the password, in no time."""
    ledger = RedisLedger("redis://:hunter2@127.0.0.1:9/0", timeout=0.5)
    with anyio.fail_after(2), pytest.raises(LedgerError, match=r"127\.0\.0\.1:9") as info:
        await ledger.get(ACCOUNT, "k")
    assert "hunter2" not in str(info.value)
    assert "hunter2" not in repr(ledger)


def _clients(server: RedisServer) -> list[str]:
    """The ``CLIENT LIST`` lines of every connection but the one asking."""
    lines = server.query("CLIENT", "LIST").splitlines()
    return [line for line in lines if " cmd=client|list " not in line]


async def _begin_many(ledger: RedisLedger, prefix: str, count: int) -> list[str]:
    decisions: list[str] = []

    async def begin(i: int) -> None:
        found = await ledger.begin(
            ACCOUNT, f"{prefix}{i}", total_limit=1, hourly_limit=1, holder=f"h{i}", lease=60
        )
        decisions.append(found.decision.value)

    async with anyio.create_task_group() as tg:
        for i in range(count):
            tg.start_soon(begin, i)
    return decisions


async def test_an_open_ledger_sends_every_operation_on_one_connection(
    redis_server: RedisServer,
) -> None:
    """Fifty operations at once share the open ledger's one connection (pipelined)."""
    async with RedisLedger(redis_server.url) as ledger:
        await ledger.record_baseline(ACCOUNT, [])
        assert await _begin_many(ledger, "k", 50) == ["send"] * 50
        assert len(_clients(redis_server)) == 1


async def test_scripts_the_server_lost_are_loaded_again_and_run_once(
    redis_server: RedisServer,
) -> None:
    """SCRIPT FLUSH under an open ledger: the next operation runs (once), not an error."""
    async with RedisLedger(redis_server.url) as ledger:
        await ledger.record_baseline(ACCOUNT, [])
        assert redis_server.query("SCRIPT", "FLUSH") == "OK"
        first = await ledger.begin(
            ACCOUNT, "k", total_limit=1, hourly_limit=1, holder="a", lease=60
        )
        assert first.decision.value == "send"
        entry = await ledger.get(ACCOUNT, "k")
        assert entry is not None
        assert entry.attempts == 1


async def test_a_lost_connection_is_replaced_however_often(redis_server: RedisServer) -> None:
    """The open ledger's connection killed 80 times (more than coredis's pool holds,
    64): an operation sent before the ledger saw the loss fails, the next one works."""
    async with RedisLedger(redis_server.url) as ledger:
        await ledger.record_baseline(ACCOUNT, [])
        for i in range(80):
            assert redis_server.query("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes") == 1
            with contextlib.suppress(LedgerError):  # sent on the dead connection, or not
                await ledger.get(ACCOUNT, f"k{i}")
            begun = await ledger.begin(
                ACCOUNT, f"k{i}", total_limit=1, hourly_limit=1, holder="a", lease=60
            )
            assert begun.decision.value == "send"


@pytest.mark.slow
async def test_a_call_that_timed_out_leaves_the_others_on_its_connection_alone(
    redis_server: RedisServer,
) -> None:
    """Redis stalled past one call's timeout, then back: a call sent later, still within
    its own time, gets its answer on the same connection (it is not dropped with the
    first)."""
    from sarv_async._redis import bounded_client
    from sarv_async._redis_scripts import KeptScripts

    redis = bounded_client(redis_server.url, 2.0)
    async with redis:
        scripts = KeptScripts(redis, {"echo": "return ARGV[1]"})
        assert await scripts.call("echo", ["k"], ["warm"]) == b"warm"
        assert redis_server.proc is not None
        os.kill(redis_server.proc.pid, signal.SIGSTOP)
        first_failed = anyio.Event()
        answers: list[object] = []

        async def first() -> None:
            with pytest.raises(TimeoutError):
                await scripts.call("echo", ["k"], ["first"])
            first_failed.set()

        async def second() -> None:
            answers.append(await scripts.call("echo", ["k"], ["second"]))

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(first)
                await anyio.sleep(1.0)  # the second call has a second more than the first
                tg.start_soon(second)
                await first_failed.wait()
                os.kill(redis_server.proc.pid, signal.SIGCONT)
        finally:
            os.kill(redis_server.proc.pid, signal.SIGCONT)
        assert answers == [b"second"]
        assert len(_clients(redis_server)) == 1


class _SilencingRelay:
    """A TCP relay to Redis whose connections can be silenced: from then on a connection
    passes nothing either way yet stays open, as one whose peer vanished without a word
    (a host gone, a NAT or firewall entry dropped) does. New connections pass as usual."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._open: list[anyio.Event] = []

    def silence(self) -> None:
        """Silence every connection open now."""
        for silenced in self._open:
            silenced.set()

    async def serve(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
            self.port = listener.extra(anyio.abc.SocketAttribute.local_port)  # noqa: S610
            task_status.started()
            await listener.serve(self._relay)

    async def _relay(self, client: anyio.abc.SocketStream) -> None:
        silenced = anyio.Event()
        self._open.append(silenced)

        async def copy(source: anyio.abc.SocketStream, sink: anyio.abc.SocketStream) -> None:
            async for data in source:
                if silenced.is_set():
                    await anyio.sleep_forever()
                await sink.send(data)

        async with (
            client,
            await anyio.connect_tcp("127.0.0.1", self.target_port) as server,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(copy, client, server)
            tg.start_soon(copy, server, client)


@pytest.mark.slow
async def test_a_connection_gone_silent_is_replaced(redis_server: RedisServer) -> None:
    """The kept connection stops answering for good, without being closed: a call times
    out, and so does one sent after that; the connection is then dropped and the next
    call is answered on a new one (it timed out for good before)."""
    from sarv_async._redis import bounded_client
    from sarv_async._redis_scripts import KeptScripts

    relay = _SilencingRelay(redis_server.port)
    async with anyio.create_task_group() as tg:
        await tg.start(relay.serve)
        redis = bounded_client(f"redis://127.0.0.1:{relay.port}/0", 0.5)
        async with redis:
            scripts = KeptScripts(redis, {"echo": "return ARGV[1]"})
            assert await scripts.call("echo", ["k"], ["warm"]) == b"warm"
            relay.silence()
            with pytest.raises(TimeoutError):
                await scripts.call("echo", ["k"], ["first"])
            with pytest.raises(TimeoutError):
                await scripts.call("echo", ["k"], ["second"])
            with anyio.fail_after(5):
                assert await scripts.call("echo", ["k"], ["third"]) == b"third"
        tg.cancel_scope.cancel()


async def test_operations_shielded_from_a_cancelled_run_fail_as_ledger_errors(
    redis_server: RedisServer,
) -> None:
    """The scope around an open ledger cancelled (a run left early) while shielded
    operations go on (as an engine records what became of a create): its connection ends
    under them, and each fails as a LedgerError, never with the connection's own
    closed-buffer error (anyio.ClosedResourceError, met at some loop turns of the end)."""
    errors: dict[int, BaseException | None] = {}
    with anyio.CancelScope() as scope:
        async with RedisLedger(redis_server.url) as ledger:
            await ledger.record_baseline(ACCOUNT, [])

            async def shielded(turns: int) -> None:
                with anyio.CancelScope(shield=True):
                    for _ in range(turns):
                        await anyio.lowlevel.checkpoint()
                    try:
                        await ledger.get(ACCOUNT, "k")
                    except Exception as exc:
                        errors[turns] = exc
                    else:
                        errors[turns] = None

            async with anyio.create_task_group() as tg:
                for turns in range(12):
                    tg.start_soon(shielded, turns)
                scope.cancel()
    assert len(errors) == 12
    raw = {turns: error for turns, error in errors.items() if error is not None}
    assert raw  # the connection did end under them
    assert all(isinstance(error, LedgerError) for error in raw.values()), raw
