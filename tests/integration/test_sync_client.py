"""`SarvClient` against the emulator: the async client's calls, blocking, from any thread."""

from __future__ import annotations

import asyncio
import gc
import inspect
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest

from sarv_async import (
    AsyncSarvClient,
    AsyncSendCleanClient,
    AuthenticationError,
    ClientState,
    ListSmtpUsersRequest,
    OutcomeUnknownError,
    ProvisionOutcome,
    SarvClient,
    SendCleanClient,
    SmtpUsers,
    SmtpUserStatus,
    SyncSmtpUsers,
    ValidationError,
)
from sarv_async._account import account_id
from sarv_async.testing import DEMO_OWNER_ID, DEMO_TOKEN, Emulator
from tests.processes import child_env

pytestmark = pytest.mark.integration

SECRET_TOKEN = "tok-LEAKED-51b2e7"


@pytest.fixture(scope="module")
def shared_emulator() -> Iterator[Emulator]:
    """One emulator for the module."""
    with Emulator() as emulator:
        yield emulator


@pytest.fixture
def emu(shared_emulator: Emulator) -> Emulator:
    """The shared emulator, emptied."""
    shared_emulator.reset()
    return shared_emulator


@pytest.fixture
def client(emu: Emulator) -> Iterator[SarvClient]:
    """A sync client of the emulator's account, without pacing."""
    with emu.sync_client(rate_limit=None) as client:
        yield client


def _loop_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("sarv-async ")]


def test_the_four_calls_return_the_async_clients_models(client: SarvClient, emu: Emulator) -> None:
    """create, update, reset_password, list and send, blocking, with the same models."""
    creds = client.smtp_users.create(total_limit=100, hourly_limit=10)
    assert emu.users()[0]["smtp_user_name"] == creds.smtp_user_name
    client.smtp_users.update(creds.smtp_user_name, hourly_limit=15, status="Disable")
    new = client.smtp_users.reset_password(creds.smtp_user_name)
    assert new.smtp_password != creds.smtp_password
    [user] = client.smtp_users.list()
    assert (user.smtp_user_name, user.smtp_password) == (creds.smtp_user_name, new.smtp_password)
    assert (user.hourly_limit, user.status) == (15, SmtpUserStatus.DISABLE)
    assert client.send(ListSmtpUsersRequest()).smtp_list == [user]


def test_errors_are_the_async_clients(emu: Emulator) -> None:
    """A bad token raises AuthenticationError; bad input raises ValidationError, unsent."""
    with SarvClient(DEMO_OWNER_ID, "wrong", base_url=emu.base_url) as client:
        with pytest.raises(AuthenticationError):
            client.smtp_users.list()
        with pytest.raises(ValidationError) as caught:
            client.smtp_users.create(total_limit=0, hourly_limit=1)
    assert caught.value.field == "total_limit"
    assert emu.stats()["requests"] == {"/v1.0/settings/listSmtp": 1}


def test_a_lost_create_is_not_repeated(client: SarvClient, emu: Emulator) -> None:
    """The exactly-once rule of the async client holds: a lost answer is unknown, not resent."""
    emu.inject_fault("drop_after_apply", path="addSmtp")
    with pytest.raises(OutcomeUnknownError):
        client.smtp_users.create(total_limit=10, hourly_limit=1)
    assert len(emu.users()) == 1
    assert emu.stats()["requests"]["/v1.0/settings/addSmtp"] == 1


def test_configuration_comes_from_the_environment(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SARV_* configure the sync client, SENDCLEAN_* the SendClean one, as the async ones."""
    monkeypatch.setenv("SENDCLEAN_OWNER_ID", DEMO_OWNER_ID)
    monkeypatch.setenv("SENDCLEAN_TOKEN", DEMO_TOKEN)
    monkeypatch.setenv("SENDCLEAN_BASE_URL", emu.base_url)
    with SendCleanClient(rate_limit=None) as client:
        assert client.smtp_users.list() == []
        assert client._client.__class__ is AsyncSendCleanClient
        assert str(client.base_url) == emu.base_url
        assert client.owner_id == DEMO_OWNER_ID
        assert (
            client.account_id
            == client._client.account_id
            == account_id(emu.base_url, DEMO_OWNER_ID)
        )


def test_with_options_shares_the_loop_and_the_life(client: SarvClient) -> None:
    """A with_options copy has its options, calls through the same loop, and closes with it."""
    copy = client.with_options(timeout=7, max_retries=5)
    assert (copy.timeout.read, copy.max_retries) == (7, 5)
    assert client.max_retries != 5
    assert copy.smtp_users.list() == []
    assert copy._runner is client._runner
    copy.close()
    assert client.state is ClientState.CLOSED


def test_eight_threads_share_one_loop_pool_and_limiter(emu: Emulator) -> None:
    """Eight threads' calls run at once on the client's one loop, through its one limiter."""
    threads_seen: set[int] = set()
    arrived = 0
    all_in: anyio.Event | None = None

    class Gate:
        """A limiter that lets calls through only once all eight are waiting in it."""

        async def acquire(self) -> None:
            nonlocal arrived, all_in
            threads_seen.add(threading.get_ident())
            if all_in is None:  # made in the loop that every call runs in
                all_in = anyio.Event()
            arrived += 1
            if arrived == 8:
                all_in.set()
            with anyio.fail_after(5):
                await all_in.wait()

        def pause(self, seconds: float) -> None:
            pass

    barrier = threading.Barrier(8)
    errors: list[BaseException] = []
    names: list[str] = []

    with emu.sync_client(limiter=Gate()) as client:

        def work() -> None:
            try:
                barrier.wait(timeout=10)
                names.append(client.smtp_users.create(total_limit=5, hourly_limit=1).smtp_user_name)
            except BaseException as exc:
                errors.append(exc)

        workers = [threading.Thread(target=work) for _ in range(8)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=15)
        assert not errors, errors
        assert len(set(names)) == 8
        assert len(client.smtp_users.list()) == 8
        # Every call ran on the client's loop thread, none on the calling threads.
        [loop_thread] = [t for t in _loop_threads() if t.ident in threads_seen]
        assert threads_seen == {loop_thread.ident}
    assert not loop_thread.is_alive()


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_calls_from_a_running_event_loop_are_refused(
    client: SarvClient, emu: Emulator, backend: str
) -> None:
    """In a coroutine, a call raises RuntimeError naming the async client, sending nothing."""

    async def in_loop() -> None:
        with pytest.raises(RuntimeError, match=f"running {backend} event loop.*AsyncSarvClient"):
            client.smtp_users.list()
        with pytest.raises(RuntimeError, match="AsyncSarvClient"):
            SarvClient(DEMO_OWNER_ID, DEMO_TOKEN, base_url=emu.base_url)
        # From a worker thread of the same loop, the sync client is fine.
        assert await anyio.to_thread.run_sync(client.smtp_users.list) == []

    anyio.run(in_loop, backend=backend)
    assert emu.stats()["requests"] == {"/v1.0/settings/listSmtp": 1}


def test_a_loop_running_in_another_thread_does_not_matter(emu: Emulator) -> None:
    """A process that runs an asyncio loop in another thread uses the sync client as usual."""
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever, daemon=True)
    runner.start()
    try:
        with emu.sync_client(rate_limit=None) as client:
            creds = client.smtp_users.create(total_limit=3, hourly_limit=1)
            # And that loop's coroutines can use it through a worker thread.
            found = asyncio.run_coroutine_threadsafe(
                asyncio.to_thread(client.smtp_users.list), loop
            ).result(timeout=30)
        assert [user.smtp_user_name for user in found] == [creds.smtp_user_name]
    finally:
        loop.call_soon_threadsafe(loop.stop)
        runner.join(timeout=10)
        loop.close()


def test_close_stops_the_thread_and_refuses_calls(emu: Emulator) -> None:
    """close() ends the loop thread; calls after it fail clearly; closing twice is fine."""
    before = set(_loop_threads())
    client = emu.sync_client()
    [thread] = set(_loop_threads()) - before
    assert client.state is ClientState.OPENED
    client.close()
    client.close()
    assert not thread.is_alive()
    assert client.state.name == "CLOSED"
    with pytest.raises(RuntimeError, match="closed"):
        client.smtp_users.list()
    with pytest.raises(RuntimeError, match="closed"), client:
        pass


@pytest.mark.slow
def test_an_unclosed_client_warns_and_stops_its_thread(emu: Emulator) -> None:
    """A client collected unclosed says so (ResourceWarning) and still stops its thread."""
    before = set(_loop_threads())
    clients = [emu.sync_client()]
    [thread] = set(_loop_threads()) - before
    with pytest.warns(ResourceWarning, match="unclosed SarvClient"):
        _forget(clients)
    thread.join(timeout=10)
    assert not thread.is_alive()


def _forget(clients: list[SarvClient]) -> None:
    clients.clear()
    gc.collect()  # the client and its smtp_users refer to each other


def test_a_failed_construction_leaves_no_thread_and_no_token(emu: Emulator) -> None:
    """Bad options raise ValidationError; no loop thread is left, no frame holds the token."""
    before = set(_loop_threads())
    with pytest.raises(ValidationError) as caught:
        SarvClient(DEMO_OWNER_ID, SECRET_TOKEN, base_url=emu.base_url, max_concurrency=0)
    assert set(_loop_threads()) == before
    rendered = "".join(
        traceback.TracebackException.from_exception(caught.value, capture_locals=True).format()
    )
    assert SECRET_TOKEN not in rendered
    client = SarvClient(DEMO_OWNER_ID, SECRET_TOKEN, base_url=emu.base_url)
    with client:
        assert SECRET_TOKEN not in repr(client) + repr(client.smtp_users)


def test_provision_iterates_over_results(client: SarvClient, emu: Emulator) -> None:
    """provision() yields every result, settles a lost create exactly once, then summarizes."""
    emu.inject_fault("drop_after_apply", path="addSmtp")
    run = client.with_options(max_retries=0).smtp_users.provision(
        [{"total_limit": 10 + i, "hourly_limit": 1} for i in range(5)], settle_delay=0
    )
    results = list(run)
    assert sorted(result.index for result in results) == list(range(5))
    assert all(result.ok for result in results)
    assert {result.outcome for result in results} == {
        ProvisionOutcome.CREATED,
        ProvisionOutcome.ADOPTED,
    }
    assert len(emu.users()) == 5
    assert (run.summary.created, run.summary.adopted, run.summary.total) == (4, 1, 5)


def test_leaving_a_provisioning_early_cancels_it(client: SarvClient, emu: Emulator) -> None:
    """Breaking out of the loop ends the run; the client stays usable."""
    run = client.smtp_users.provision(
        [{"total_limit": 10, "hourly_limit": 1} for _ in range(50)], concurrency=1
    )
    with run:
        for _ in run:
            break
    with pytest.raises(RuntimeError, match="not finished"):
        _ = run.summary
    _until_every_create_received_is_done(emu)  # one the run gave up on may still run
    assert len(emu.users()) < 50
    # The client still lists the account. A create the run gave up on may still reach
    # the emulator after the wait above (sent, not yet read): list until they agree.
    deadline = time.monotonic() + 5
    while len(client.smtp_users.list()) != len(emu.users()):
        assert time.monotonic() < deadline, "the client's list never matched the account"
    assert len(emu.users()) < 50


def _until_every_create_received_is_done(emu: Emulator) -> None:
    """Wait until the emulator has made a user for every create it received."""
    deadline = time.monotonic() + 5
    while True:
        stats = emu.stats()
        if stats["users"] == stats["requests"].get("/v1.0/settings/addSmtp", 0):
            return
        assert time.monotonic() < deadline, stats
        time.sleep(0.001)


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="signals to a thread")
def test_a_close_interrupted_while_it_waits_can_be_done_again() -> None:
    """Ctrl-C while close() waits for a call in flight: a later close() still closes."""
    with Emulator(latency_ms=500) as slow:
        client = SarvClient(DEMO_OWNER_ID, DEMO_TOKEN, base_url=slow.base_url, rate_limit=None)
        client.smtp_users.list()  # opened
        in_flight = threading.Thread(target=client.smtp_users.list)
        in_flight.start()
        while not client._runner.in_flight:
            time.sleep(0.001)
        main = threading.main_thread().ident
        assert main is not None

        def interrupt_once_waiting() -> None:
            while not client._runner.closed:
                time.sleep(0.001)
            signal.pthread_kill(main, signal.SIGINT)

        interrupter = threading.Thread(target=interrupt_once_waiting)
        interrupter.start()
        with pytest.raises(KeyboardInterrupt):
            client.close()
        interrupter.join()
        in_flight.join()
        client.close()
        assert client.state is ClientState.CLOSED
        assert not client._runner.loop._thread.is_alive()


def test_provision_summary_by_complete(client: SarvClient) -> None:
    """complete() reads every result and returns the summary."""
    summary = client.smtp_users.provision([{"total_limit": 1, "hourly_limit": 1}]).complete()
    assert (summary.total, summary.created) == (1, 1)


@pytest.mark.parametrize(("how", "made"), [("iterated", 3), ("with", 2)])
def test_closing_the_client_under_an_unread_run_ends_the_run(
    emu: Emulator, how: str, made: int
) -> None:
    """A run left open with results unread (a partly read iterator, a ``with run:``)
    when its client closes is ended with it, as leaving its block early does: close()
    does not wait for it forever, and the run then says the client is closed."""
    waiting = threading.Event()

    def progress(done: int, failed: int, total: int | None) -> None:
        if done == made:  # its result finds the buffer (of one) full: the run waits
            waiting.set()

    client = emu.sync_client(rate_limit=None)
    spec = {"total_limit": 1, "hourly_limit": 1}
    run = client.smtp_users.provision([spec] * 5, concurrency=1, progress=progress)
    results = iter(run)
    if how == "iterated":
        assert next(results).outcome is ProvisionOutcome.CREATED
    else:
        run.__enter__()
    assert waiting.wait(10)
    closer = threading.Thread(target=client.close, daemon=True)
    closer.start()
    closer.join(10)
    assert not closer.is_alive(), "close() hangs on the run left open"
    assert client.state is ClientState.CLOSED
    end: Callable[[], object] = (
        (lambda: next(results)) if how == "iterated" else (lambda: run.__exit__(None, None, None))
    )
    with pytest.raises(RuntimeError, match="is closed"):
        end()
    assert len(emu.users()) == made  # nothing created is lost from the account


def test_the_sync_client_takes_what_the_async_one_takes() -> None:
    """The same arguments and calls as the async twins (but the async-only http_client)."""

    def parameters(func: Any, drop: tuple[str, ...] = ()) -> list[tuple[str, Any, Any]]:
        signature = inspect.signature(func)
        return [
            (p.name, p.kind, p.default) for p in signature.parameters.values() if p.name not in drop
        ]

    assert parameters(SarvClient.__init__) == parameters(
        AsyncSarvClient.__init__, drop=("http_client",)
    )
    for name in ("create", "update", "reset_password", "list", "provision"):
        assert parameters(getattr(SyncSmtpUsers, name)) == parameters(getattr(SmtpUsers, name))
    assert parameters(SarvClient.with_options) == parameters(AsyncSarvClient.with_options)


def test_the_sarv_emulator_fixture_serves_sync_tests(sarv_emulator: Emulator) -> None:
    """A plain (sync) test gets a sync client of the plugin's emulator."""
    with sarv_emulator.sync_client() as client:
        client.smtp_users.create(total_limit=1, hourly_limit=1)
    assert len(sarv_emulator.users()) == 1


def test_respx_mocks_the_sync_clients_calls() -> None:
    """respx, active in the test's thread, answers the calls the client makes in its own."""
    import respx

    from sarv_async.testing import answers

    base = "https://api.tes.example.com/v1.0/"
    with respx.mock:
        respx.post(answers.url("list", base)).mock(
            return_value=answers.list_answer([answers.user("smtp1")])
        )
        with SarvClient("o", "t", base_url=base, rate_limit=None) as client:
            assert [u.smtp_user_name for u in client.smtp_users.list()] == ["smtp1"]


def test_close_lets_calls_in_flight_end(emu: Emulator) -> None:
    """close() from one thread waits for another thread's call, which succeeds."""
    entered, release = threading.Event(), threading.Event()

    class Holding:
        """A limiter that holds the first call until the test releases it."""

        async def acquire(self) -> None:
            if not entered.is_set():
                entered.set()
                await anyio.to_thread.run_sync(release.wait)

        def pause(self, seconds: float) -> None:
            pass

    client = emu.sync_client(limiter=Holding())
    results: list[object] = []
    caller = threading.Thread(target=lambda: results.append(client.smtp_users.list()))
    caller.start()
    assert entered.wait(10)
    closer = threading.Thread(target=client.close)
    closer.start()
    closer.join(0.2)
    assert closer.is_alive()  # waiting for the call in flight
    with pytest.raises(RuntimeError, match="closed"):
        client.smtp_users.list()  # new calls are refused meanwhile
    release.set()
    caller.join(10)
    closer.join(10)
    assert results == [[]]
    assert client.state.name == "CLOSED"


def test_a_finished_run_is_not_iterated_again(client: SarvClient) -> None:
    """A provisioning run is read once; iterating it again says so."""
    run = client.smtp_users.provision([{"total_limit": 1, "hourly_limit": 1}])
    assert len(list(run)) == 1
    with pytest.raises(RuntimeError, match="over"):
        list(run)


_FORKED = """
import os, signal, sys
from sarv_async import SarvClient
from sarv_async.testing import DEMO_OWNER_ID, DEMO_TOKEN

client = SarvClient(DEMO_OWNER_ID, DEMO_TOKEN, base_url=sys.argv[1], rate_limit=None)
client.smtp_users.list()
pid = os.fork()
if pid == 0:
    signal.alarm(20)  # a child that hangs ends here, reported as killed by SIGALRM
    try:
        client.smtp_users.list()
    except RuntimeError as exc:
        print("child refused:", exc, flush=True)
    client.close()
    print("child closed", flush=True)
    client = SarvClient(DEMO_OWNER_ID, DEMO_TOKEN, base_url=sys.argv[1], rate_limit=None)
    print("child listed", len(client.smtp_users.list()), flush=True)
    sys.exit(0)  # the new client is left unclosed: its finalizer runs at exit
_, status = os.waitpid(pid, 0)
print("child status", os.waitstatus_to_exitcode(status), flush=True)  # -14: it hung
client.smtp_users.list()
client.close()
print("parent closed", flush=True)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_is_refused_the_parents_client_and_exits(emu: Emulator) -> None:
    """After a fork, the child's copy of a used client refuses calls instead of hanging on
    a loop thread the child does not have; closing it, and exiting, do not hang either.
    The parent's client goes on as before, and the child can make its own."""
    proc = subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
        [sys.executable, "-W", "ignore::DeprecationWarning", "-c", _FORKED, emu.base_url],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    refused, *lines = proc.stdout.splitlines()
    assert refused.startswith("child refused:"), proc.stdout
    assert "fork" in refused
    assert lines == ["child closed", "child listed 0", "child status 0", "parent closed"]
