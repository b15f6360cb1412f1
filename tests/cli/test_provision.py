"""``smtp provision``: specs CSV in, private credentials CSV out, exactly one user per row."""

from __future__ import annotations

import csv
import os
import re
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from sarv_async import Backoff
from sarv_async._cli._files import CredentialsFile, create_private_file
from sarv_async._cli._output import CliError
from sarv_async._cli._provision_cmd import ProvisionRun
from sarv_async._cli._provision_csv import RESULT_COLUMNS, provision_rows, read_specs
from sarv_async.testing import Emulator, _calls

from ._support import ACCOUNTS, OWNER_ID, TOKEN, assert_no_secret, file_mode, passwords
from .conftest import Cli

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")

COLUMNS = ["customer", "total_limit", "hourly_limit", "note"]


def _write_specs(path: Path, count: int) -> Path:
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(COLUMNS)
        for i in range(count):
            writer.writerow([f"cust-{i:03}", 100 + i % 4, 10 + i % 3, f"note, with comma {i} é"])
    return path


def _read(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


@pytest.fixture
def faulty_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    """A paced emulator where a quarter of the calls meet a fault, its account in SARV_*."""
    with Emulator(accounts=ACCOUNTS, fault_rate=0.25, seed=11, rate_limit="50/second") as emu:
        monkeypatch.setenv("SARV_OWNER_ID", OWNER_ID)
        monkeypatch.setenv("SARV_TOKEN", TOKEN)
        monkeypatch.setenv("SARV_BASE_URL", emu.base_url)
        yield emu


@pytest.mark.slow
@posix_only
def test_every_row_gets_exactly_one_user_through_faults(
    cli: Cli, faulty_env: Emulator, tmp_path: Path
) -> None:
    """N rows through 25% faults: N users, each credential as on the server, 0600 file, exit 0."""
    specs = _write_specs(tmp_path / "specs.csv", 24)
    out = tmp_path / "creds.csv"
    run = cli(
        "smtp",
        "provision",
        "--settle-delay",
        "0",
        str(specs),
        "--out",
        str(out),
        "--rate-limit",
        "50/second",
    )
    assert run.code == 0, run.err
    assert faulty_env.stats()["faults"] > 0
    assert faulty_env.stats()["responses"].get("429", 0) == 0

    assert file_mode(out) == 0o600
    header, rows = _read(out)
    assert header == [*COLUMNS, *RESULT_COLUMNS]
    server = passwords(faulty_env)
    assert len(server) == len(rows) == 24
    names = Counter(row["smtp_user_name"] for row in rows)
    assert len(names) == 24, "a user was given to two rows"
    for row in rows:
        assert server[row["smtp_user_name"]] == row["smtp_password"]
        assert row["outcome"] in ("created", "adopted")
        assert row["error"] == ""
    by_customer = {row["customer"]: row for row in rows}
    assert sorted(by_customer) == [f"cust-{i:03}" for i in range(24)]
    assert by_customer["cust-005"]["note"] == "note, with comma 5 é"
    users = {user["smtp_user_name"]: user for user in faulty_env.users()}
    for customer, row in by_customer.items():
        i = int(customer.removeprefix("cust-"))
        user = users[row["smtp_user_name"]]
        assert (user["total_limit"], user["hourly_limit"]) == (100 + i % 4, 10 + i % 3)

    assert run.out.startswith("24 rows: ")
    assert "0 failed, 0 unknown, 0 orphans" in run.out
    adopted = re.search(r"(\d+) adopted", run.out)
    assert adopted is not None
    assert int(adopted.group(1)) > 0, "no lost answer was reconciled"
    assert_no_secret(run.text, [*server.values(), TOKEN])


def test_a_bad_row_is_reported_by_line_and_nothing_is_created(
    cli: Cli, account_env: Emulator, tmp_path: Path
) -> None:
    """Bad rows are named with their line numbers before any call; no user, no output file."""
    specs = tmp_path / "specs.csv"
    lines = [
        "customer,total_limit,hourly_limit",
        "a,100,10",
        "",
        "b,100,10",
        "c,ten,10",
        "d,100",
        "e,100,0",
        f"f,{'9' * 5000},1",
    ]
    specs.write_text("\n".join(lines) + "\n")
    out = tmp_path / "creds.csv"
    run = cli("smtp", "provision", "--settle-delay", "0", str(specs), "--out", str(out))
    assert run.code == 2
    assert run.err.splitlines() == [
        f"error: {specs}:5: total_limit must be a positive whole number, got 'ten'",
        f"error: {specs}:6: 2 fields, but the header has 3",
        f"error: {specs}:7: hourly_limit must be a positive whole number, got '0'",
        f"error: {specs}:8: total_limit is too large: the API takes at most {2**63 - 1}",
        f"error: 4 bad rows in {specs}; nothing was created",
    ]
    assert account_env.stats()["requests"] == {}
    assert not out.exists()


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("total_limit,limit_per_hour", "header lacks hourly_limit"),
        ("total_limit,hourly_limit,total_limit", "header repeats total_limit"),
        ("total_limit,hourly_limit,outcome", "has outcome, which the credentials file adds"),
    ],
)
def test_a_bad_header_is_one_error_line(
    cli: Cli, account_env: Emulator, tmp_path: Path, header: str, expected: str
) -> None:
    """A header without the limit columns, or with repeated or reserved names, is refused."""
    specs = tmp_path / "specs.csv"
    specs.write_text(f"{header}\n1,2,3\n")
    run = cli(
        "smtp", "provision", "--settle-delay", "0", str(specs), "--out", str(tmp_path / "creds.csv")
    )
    assert run.code == 2
    [line] = run.err.splitlines()
    assert line.startswith(f"error: {specs}:1: header")
    assert expected in line
    assert account_env.stats()["requests"] == {}


def test_an_existing_file_that_is_not_our_output_is_left_alone(
    cli: Cli, account_env: Emulator, tmp_path: Path
) -> None:
    """An existing OUT with other columns is kept as it is, and nothing is created."""
    specs = _write_specs(tmp_path / "specs.csv", 2)
    out = tmp_path / "creds.csv"
    out.write_text("earlier credentials\n")
    run = cli("smtp", "provision", "--settle-delay", "0", str(specs), "--out", str(out))
    assert run.code == 2
    assert "is not this command's credentials file" in run.err
    assert out.read_text() == "earlier credentials\n"
    assert account_env.stats()["requests"] == {}


def test_force_is_gone(cli: Cli, account_env: Emulator, tmp_path: Path) -> None:
    """No option of provision may delete a credentials file."""
    specs = _write_specs(tmp_path / "specs.csv", 2)
    with pytest.raises(SystemExit) as info:
        cli("smtp", "provision", str(specs), "--out", str(tmp_path / "o.csv"), "--force")
    assert info.value.code == 2


@posix_only
def test_a_rerun_after_success_creates_nothing_and_says_so(
    cli: Cli, account_env: Emulator, tmp_path: Path
) -> None:
    """The same command again: no create, the same file, and a line saying so."""
    specs = _write_specs(tmp_path / "specs.csv", 4)
    out = tmp_path / "creds.csv"
    argv = ("smtp", "provision", "--settle-delay", "0", str(specs), "--out", str(out))
    assert cli(*argv).code == 0
    before = out.read_text(encoding="utf-8")
    creates = account_env.stats()["requests"]["/v1.0/settings/addSmtp"]
    run = cli(*argv)
    assert run.code == 0, run.err
    assert account_env.stats()["requests"]["/v1.0/settings/addSmtp"] == creates
    assert "0 created, 0 adopted, 4 done earlier" in run.out
    assert "nothing to do" in run.out
    assert out.read_text(encoding="utf-8") == before
    assert file_mode(out) == 0o600


@posix_only
def test_a_rerun_into_a_new_out_reads_every_password_back(
    cli: Cli, account_env: Emulator, tmp_path: Path
) -> None:
    """The same input with another OUT: nothing created, every password read with list."""
    specs = _write_specs(tmp_path / "specs.csv", 3)
    argv = ("smtp", "provision", "--settle-delay", "0", str(specs), "--out")
    assert cli(*argv, str(tmp_path / "a.csv")).code == 0
    run = cli(*argv, str(tmp_path / "b.csv"))
    assert run.code == 0, run.err
    assert len(account_env.users()) == 3
    rows = _read(tmp_path / "b.csv")[1]
    server = passwords(account_env)
    assert {row["smtp_user_name"]: row["smtp_password"] for row in rows} == server
    assert {row["outcome"] for row in rows} == {"existing"}


def test_appended_rows_are_created_and_an_edited_row_is_an_error(
    cli: Cli, account_env: Emulator, tmp_path: Path
) -> None:
    """Rows appended to the file are created; a done row edited is refused by line."""
    specs = _write_specs(tmp_path / "specs.csv", 3)
    out = tmp_path / "creds.csv"
    argv = ("smtp", "provision", "--settle-delay", "0", str(specs), "--out", str(out))
    assert cli(*argv).code == 0
    lines = specs.read_text(encoding="utf-8").splitlines()
    lines[2] = lines[2].replace("cust-001", "cust-one")
    specs.write_text("\n".join([*lines, "cust-new,5,1,added"]) + "\n", encoding="utf-8")
    run = cli(*argv)
    assert run.code == 1
    assert f"error: {specs}:3: " in run.err
    assert "already used for other content" in run.err
    assert "1 created, 0 adopted, 2 done earlier, 1 failed" in run.out
    assert len(account_env.users()) == 4
    rows = _read(out)[1]
    # The edited row's user keeps its credentials under the row as it was provisioned.
    assert sorted(row["customer"] for row in rows if row["smtp_password"]) == [
        "cust-000",
        "cust-001",
        "cust-002",
        "cust-new",
    ]


@pytest.mark.slow
def test_a_key_column_makes_an_ensure_these_exist_list(
    cli: Cli, account_env: Emulator, tmp_path: Path
) -> None:
    """With a key column, rows may be reordered and added: existing keys are skipped."""
    specs = tmp_path / "specs.csv"
    specs.write_text("key,total_limit,hourly_limit\nt1,5,1\nt2,6,1\n")
    argv = ("smtp", "provision", "--settle-delay", "0", str(specs), "--out")
    assert cli(*argv, str(tmp_path / "a.csv")).code == 0
    specs.write_text("key,total_limit,hourly_limit\nt3,7,1\nt2,6,1\nt1,5,1\n")
    run = cli(*argv, str(tmp_path / "b.csv"))
    assert run.code == 0, run.err
    assert "1 created, 0 adopted, 2 done earlier" in run.out
    assert len(account_env.users()) == 3


def test_repeated_or_empty_keys_are_refused_by_line(
    cli: Cli, account_env: Emulator, tmp_path: Path
) -> None:
    """A key given twice, or empty, is a usage error naming the lines; nothing is sent."""
    specs = tmp_path / "specs.csv"
    specs.write_text("key,total_limit,hourly_limit\nt1,5,1\nt1,6,1\n ,1,1\n")
    run = cli("smtp", "provision", str(specs), "--out", str(tmp_path / "o.csv"))
    assert run.code == 2
    assert f"error: {specs}:3: key 't1' repeats line 2" in run.err
    assert f"error: {specs}:4: key is empty" in run.err
    assert account_env.stats()["requests"] == {}


@pytest.mark.slow
def test_the_ledger_option_and_variable_choose_the_file(
    cli: Cli, account_env: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--ledger PATH (or SARV_LEDGER) is where creates are recorded; the default is per user."""
    from sarv_async._cli._state import default_ledger_path

    specs = _write_specs(tmp_path / "specs.csv", 1)
    chosen = tmp_path / "chosen.sqlite3"
    argv = ("smtp", "provision", "--settle-delay", "0", str(specs))
    assert cli(*argv, "--out", str(tmp_path / "a.csv"), "--ledger", str(chosen)).code == 0
    assert chosen.exists()
    assert not default_ledger_path().exists()
    monkeypatch.setenv("SARV_LEDGER", str(chosen))
    run = cli(*argv, "--out", str(tmp_path / "b.csv"))
    assert "1 done earlier" in run.out
    monkeypatch.delenv("SARV_LEDGER")
    run = cli(*argv, "--out", str(tmp_path / "c.csv"))
    assert "1 created" in run.out  # another ledger knows nothing of the first run
    assert default_ledger_path().exists()


def test_the_input_file_is_never_the_output(
    cli: Cli, account_env: Emulator, tmp_path: Path
) -> None:
    """--out naming the input file is refused."""
    specs = _write_specs(tmp_path / "specs.csv", 2)
    before = specs.read_text()
    run = cli("smtp", "provision", "--settle-delay", "0", str(specs), "--out", str(specs))
    assert run.code == 2
    assert "is the input file" in run.err
    assert specs.read_text() == before


@posix_only
def test_output_is_private_before_any_row_and_each_row_is_flushed(
    cli: Cli, account_env: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every row is written to a file already 0600, and is on disk before the next result."""
    specs = _write_specs(tmp_path / "specs.csv", 6)
    out = tmp_path / "creds.csv"
    seen: list[tuple[int, int]] = []
    write_row = CredentialsFile.write_row

    def checked_write_row(self: CredentialsFile, row: list[str]) -> None:
        mode = file_mode(self.path)
        write_row(self, row)
        lines_on_disk = len(Path(self.path).read_text(encoding="utf-8").splitlines())
        seen.append((mode, lines_on_disk))

    monkeypatch.setattr(CredentialsFile, "write_row", checked_write_row)
    assert cli("smtp", "provision", "--settle-delay", "0", str(specs), "--out", str(out)).code == 0
    assert seen == [(0o600, n + 2) for n in range(6)]  # header + rows so far


@posix_only
def test_private_file_is_0600_whatever_the_umask(tmp_path: Path) -> None:
    """The file is created 0600 and empty, even under a permissive umask."""
    path = tmp_path / "creds.csv"
    old = os.umask(0)
    try:
        with create_private_file(str(path)) as file:
            assert file_mode(path) == 0o600
            assert path.stat().st_size == 0
            file.write("x")
    finally:
        os.umask(old)


@posix_only
def test_a_symlink_at_the_output_path_is_not_followed(tmp_path: Path) -> None:
    """With --force a symbolic link is replaced, its target left untouched."""
    target = tmp_path / "target.txt"
    target.write_text("precious")
    link = tmp_path / "creds.csv"
    link.symlink_to(target)
    with pytest.raises(CliError, match="already exists"):
        create_private_file(str(link))
    with create_private_file(str(link), force=True) as file:
        file.write("new")
    assert target.read_text() == "precious"
    assert not link.is_symlink()


def test_failed_rows_give_a_nonzero_exit_with_their_line_numbers(
    cli: Cli, account_env: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A row the server refuses is failed in the file and named on stderr; exit status 1."""
    monkeypatch.setattr(_calls, "_MAX_LIMIT", 10**6)  # a server with a lower bound (a plan's)
    specs = tmp_path / "specs.csv"
    specs.write_text("total_limit,hourly_limit\n100,10\n9999999,10\n")
    out = tmp_path / "creds.csv"
    run = cli("smtp", "provision", "--settle-delay", "0", str(specs), "--out", str(out))
    assert run.code == 1
    [line] = run.err.splitlines()
    assert line.startswith(f"error: {specs}:3: ValidationError")
    assert "1 created, 0 adopted, 0 done earlier, 1 failed, 0 unknown, 0 orphans" in run.out
    rows = {row["total_limit"]: row for row in _read(out)[1]}
    assert rows["100"]["outcome"] == "created"
    assert rows["9999999"]["outcome"] == "failed"
    assert rows["9999999"]["smtp_password"] == ""
    assert "ValidationError" in rows["9999999"]["error"]


def test_authentication_failure_is_one_line_and_leaves_no_file(
    cli: Cli, account_env: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wrong token stops the run before any create; one error line, no output file."""
    monkeypatch.setenv("SARV_TOKEN", "wrong-token")
    specs = _write_specs(tmp_path / "specs.csv", 3)
    out = tmp_path / "creds.csv"
    run = cli("smtp", "provision", "--settle-delay", "0", str(specs), "--out", str(out))
    assert run.code == 2
    [line] = run.err.splitlines()
    assert line.startswith("error: authentication failed")
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [specs]  # no record, no lock file either
    assert account_env.users() == []


@pytest.mark.anyio
async def test_provision_rows_streams_results_into_the_file(tmp_path: Path) -> None:
    """provision_rows writes one row per spec, on either event loop, carrying the cells."""
    specs = read_specs(str(_write_specs(tmp_path / "specs.csv", 5)))
    path = tmp_path / "creds.csv"
    async with Emulator(accounts=ACCOUNTS, fault_rate=0.25, seed=3) as emu:
        async with emu.client(backoff=Backoff(initial=0.01, maximum=0.05)) as client:
            with CredentialsFile(str(path), specs.output_columns) as out:
                summary = await provision_rows(client, specs, out)
        server = passwords(emu)
    assert summary.created + summary.adopted == 5
    rows = _read(path)[1]
    assert {row["customer"] for row in rows} == {row.cells[0] for row in specs.rows()}
    assert {row["smtp_user_name"]: row["smtp_password"] for row in rows} == server


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("change", "said"),
    [
        ("bad", "line 4: total_limit must be a positive whole number"),
        ("more", "it has more rows"),
        ("fewer", "it has fewer rows"),
    ],
)
async def test_a_specs_file_changed_after_its_check_stops_the_run(
    tmp_path: Path, change: str, said: str
) -> None:
    """The rows are read again while provisioning: a file changed since its check is an error."""
    path = _write_specs(tmp_path / "specs.csv", 5)
    specs = read_specs(str(path))
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    if change == "bad":
        lines[3] = "cust-x,many,10,note\r\n"
    elif change == "more":
        lines.append(lines[-1])
    else:
        del lines[-1]
    path.write_text("".join(lines), encoding="utf-8")
    async with Emulator(accounts=ACCOUNTS) as emu, emu.client(rate_limit=None) as client:
        out = CredentialsFile(str(tmp_path / "creds.csv"), specs.output_columns)
        with out, pytest.raises(CliError) as caught:
            await provision_rows(client, specs, out, settle_delay=0)
        created = len(emu.users())
    assert f"{path} changed after it was checked" in str(caught.value)
    assert said in str(caught.value)
    assert created <= 5


@posix_only
def test_an_interrupted_run_keeps_the_rows_it_wrote(
    cli: Cli, account_env: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C after three results: exit 130, and the file keeps those three rows, 0600."""
    specs = _write_specs(tmp_path / "specs.csv", 6)
    out = tmp_path / "creds.csv"
    write_row = CredentialsFile.write_row

    def interrupting_write_row(self: CredentialsFile, row: list[str]) -> None:
        if self.rows_written == 3:
            raise KeyboardInterrupt
        write_row(self, row)

    monkeypatch.setattr(CredentialsFile, "write_row", interrupting_write_row)
    run = cli("smtp", "provision", "--settle-delay", "0", str(specs), "--out", str(out))
    assert run.code == 130
    assert run.err.splitlines() == [
        f"warning: stopped: 3 of 6 rows done (in {out}); run the same command again to resume",
        "error: interrupted",
    ]
    assert file_mode(out) == 0o600
    rows = _read(out)[1]
    assert len(rows) == 3
    server = passwords(account_env)
    assert all(server[row["smtp_user_name"]] == row["smtp_password"] for row in rows)


@posix_only
def test_an_interrupt_as_the_run_reports_still_says_where_it_stands(
    cli: Cli, account_env: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C once every row is done, as the counts are printed: 130, with the same note
    as an interrupt mid-run, not a bare "interrupted"."""
    specs = _write_specs(tmp_path / "specs.csv", 4)
    out = tmp_path / "creds.csv"

    def interrupted_report(self: ProvisionRun, summary: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(ProvisionRun, "_report", interrupted_report)
    run = cli("smtp", "provision", "--settle-delay", "0", str(specs), "--out", str(out))
    assert run.code == 130
    assert run.err.splitlines() == [
        f"warning: stopped: 4 of 4 rows done (in {out}); run the same command again to resume",
        "error: interrupted",
    ]
    assert len(_read(out)[1]) == 4


def test_a_write_failure_names_the_user_it_could_not_save(
    cli: Cli, account_env: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If a result cannot be written, the error names the created user and how to recover it."""
    specs = _write_specs(tmp_path / "specs.csv", 1)

    def disk_full(self: CredentialsFile, row: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(CredentialsFile, "write_row", disk_full)
    run = cli("smtp", "provision", str(specs), "--out", str(tmp_path / "creds.csv"))
    [user] = account_env.users()
    assert run.code != 0
    assert "No space left on device" in run.err
    assert f"SMTP user {user['smtp_user_name']} was created" in run.err
    assert f"reset-password {user['smtp_user_name']}" in run.err
    assert user["password"] not in run.err + run.out


@posix_only
def test_resuming_keeps_credentials_and_drops_cut_or_failed_rows(tmp_path: Path) -> None:
    """A resumed OUT keeps rows with a user, drops failed ones and a row cut by a kill."""
    from sarv_async._cli._files import resume_credentials_file

    header = ["customer", "smtp_user_name", "smtp_password", "outcome", "error"]
    out = tmp_path / "creds.csv"
    out.write_text(
        "customer,smtp_user_name,smtp_password,outcome,error\r\n"
        "a,smtp1,pw-1,created,\r\n"
        "b,,,failed,ValidationError\r\n"
        "c,smtp3,pw-3,adopted,\r\n"
        "d,smtp4,pw-4-cut-sh",  # killed mid-write: no line end
        encoding="utf-8",
    )
    out.chmod(0o644)
    resumed, users = resume_credentials_file(str(out), header, "smtp_user_name")
    with resumed:
        resumed.write_row(["e", "smtp5", "pw-5", "created", ""])
    assert users == {"smtp1", "smtp3"}
    assert file_mode(out) == 0o600
    assert out.read_text(encoding="utf-8").splitlines() == [
        "customer,smtp_user_name,smtp_password,outcome,error",
        "a,smtp1,pw-1,created,",
        "c,smtp3,pw-3,adopted,",
        "e,smtp5,pw-5,created,",
    ]
    assert not (tmp_path / "creds.csv.partial").exists()


def test_the_ledger_holds_no_password_and_no_token(
    cli: Cli, account_env: Emulator, tmp_path: Path
) -> None:
    """After a run, no password and no token are anywhere in the ledger's files."""
    from sarv_async._cli._state import default_ledger_path

    specs = _write_specs(tmp_path / "specs.csv", 5)
    run = cli("smtp", "provision", "--settle-delay", "0", str(specs), "--out", str(tmp_path / "o"))
    assert run.code == 0, run.err
    ledger = default_ledger_path()
    files = [path for path in ledger.parent.iterdir() if path.name.startswith(ledger.name)]
    content = b"".join(path.read_bytes() for path in files)
    names = [name.encode() for name in passwords(account_env)]
    assert all(name in content for name in names)  # the user names are recorded...
    for secret in [*passwords(account_env).values(), TOKEN]:
        assert secret.encode() not in content  # ...their passwords and the token never
