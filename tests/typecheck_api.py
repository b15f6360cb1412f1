"""The public API's types, as a user's type checker sees them.

Type-checked by mypy (``nox -s typing``), never run: pytest does not collect it.
"""

from __future__ import annotations

from typing import assert_type

import httpx

import sarv_async
from sarv_async import (
    AsyncSarvClient,
    AsyncSendCleanClient,
    CreateSmtpUserRequest,
    ListSmtpUsersRequest,
    NotProvisioned,
    Provisioned,
    ProvisionResult,
    ProvisionSummary,
    SmtpCredentials,
    SmtpUser,
    SmtpUserList,
    SmtpUserStatus,
    UpdateSmtpUserResponse,
)


async def calls(client: AsyncSarvClient) -> None:
    assert_type(await client.smtp_users.create(total_limit=1, hourly_limit=1), SmtpCredentials)
    assert_type(
        await client.smtp_users.update("smtp1", status=SmtpUserStatus.ENABLE),
        UpdateSmtpUserResponse,
    )
    assert_type(await client.smtp_users.update("smtp1", status="Disable"), UpdateSmtpUserResponse)
    assert_type(await client.smtp_users.reset_password("smtp1"), SmtpCredentials)
    assert_type(await client.smtp_users.list(), list[SmtpUser])
    assert_type(await client.send(ListSmtpUsersRequest()), SmtpUserList)
    assert_type(
        await client.send(CreateSmtpUserRequest(total_limit=1, hourly_limit=1)), SmtpCredentials
    )
    assert_type(client.with_options(timeout=3), AsyncSarvClient)
    assert_type(client.with_options(max_answer_bytes=1 << 20).max_answer_bytes, int)
    assert_type(client.base_url, httpx.URL)


async def lifecycle() -> None:
    async with AsyncSendCleanClient("o", "t") as client:
        assert_type(client, AsyncSendCleanClient)
        assert_type(client.with_options(max_retries=0), AsyncSendCleanClient)
        async with client.smtp_users.provision([{"total_limit": 1, "hourly_limit": 1}]) as run:
            async for result in run:
                assert_type(result, Provisioned | NotProvisioned)
                assert isinstance(result, ProvisionResult)
                if result.ok:  # narrows: the credentials are there
                    assert_type(result.credentials, SmtpCredentials)
                    assert_type(result.credentials.smtp_password, str)
                    assert_type(result.error, None)
                else:
                    assert_type(result.credentials, None)
                    assert_type(result.error, sarv_async.SarvError)
        assert_type(run.summary, ProvisionSummary)


def errors(error: sarv_async.SarvError) -> None:
    if isinstance(error, sarv_async.RateLimitError):
        assert_type(error.retry_after, float | None)
    if isinstance(error, sarv_async.APIError):
        assert_type(error.status_code, int | None)


def sync_calls() -> None:
    with sarv_async.SendCleanClient("o", "t") as client:
        assert_type(client, sarv_async.SendCleanClient)
        assert_type(client.with_options(max_retries=0), sarv_async.SendCleanClient)
        assert_type(client.smtp_users.create(total_limit=1, hourly_limit=1), SmtpCredentials)
        assert_type(client.smtp_users.list(), list[SmtpUser])
        assert_type(client.smtp_users.update("smtp1", status="Enable"), UpdateSmtpUserResponse)
        assert_type(client.send(ListSmtpUsersRequest()), SmtpUserList)
        run = client.smtp_users.provision([{"total_limit": 1, "hourly_limit": 1}])
        for result in run:
            assert_type(result, sarv_async.AnyProvisionResult)
            if result.ok:
                assert_type(result.credentials, SmtpCredentials)
        assert_type(run.summary, ProvisionSummary)
