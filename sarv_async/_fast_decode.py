"""List answers decoded straight from their bytes by msgspec (``sarv-async[fast]``).

With msgspec installed, a list answer of the documented shape is decoded in one pass
from the bytes into the SDK's own `SmtpUser` attrs instances: no intermediate dicts,
exact types only (a string where the table says string, an integer that is no bool or
float, the status ``"Enable"`` or ``"Disable"``, no null), and an envelope whose
``status`` is ``"success"``. Anything else (another status spelling, a numeric string,
a null, a missing key, no ``smtp_list``, an error envelope, invalid JSON, a body that is
not UTF-8) makes the decoder return None, and the answer is read as without msgspec:
`json.loads`, the envelope check and the tolerant cattrs path, which decide what it
means and name the bad field. So the fast decoder never reads an answer differently; it
only reads it sooner. Its own errors are dropped where they are caught: their messages can quote a
value (say a password sent as the status), so none is raised, chained or kept.

msgspec matches fields by name, and the docs' sample spells the password ``password``
while their table (and the class) says ``smtp_password``. The sample's spelling is
decoded into a msgspec struct that renames it and refuses a second spelling in the
same user, then converted in C; the table's spelling goes straight into `SmtpUser`.
"""

from collections.abc import Callable

from ._models import SmtpUserList

__all__ = ["list_decoder"]

ListDecoder = Callable[[bytes], SmtpUserList | None]

#: The decoder once built: None when msgspec is not installed (or too old).
_decoders: dict[str, ListDecoder | None] = {}


def list_decoder() -> ListDecoder | None:
    """The fast decoder of list answers, or None without msgspec (imported on first use)."""
    try:
        return _decoders["list"]
    except KeyError:
        decoder = _decoders["list"] = _make_list_decoder()
        return decoder


def _make_list_decoder() -> ListDecoder | None:
    try:
        return _build()
    except ImportError:  # no sarv-async[fast]
        return None
    except (TypeError, AttributeError, NotImplementedError):  # a msgspec without attrs support
        return None


def _build() -> ListDecoder:
    from typing import Literal

    import msgspec

    from ._models import SmtpUser, SmtpUserStatus

    class SampleUser(
        msgspec.Struct,
        gc=False,
        rename={"smtp_password": "password", "table_spelling": "smtp_password"},
    ):
        """A user as the docs' sample spells it; the table's key as well is a surprise."""

        smtp_user_name: str
        smtp_password: str
        status: SmtpUserStatus
        total_limit: int
        hourly_limit: int
        # Of a type no JSON value decodes to: present at all, it fails the decode.
        table_spelling: msgspec.UnsetType = msgspec.UNSET

    # ``smtp_list`` is required: an answer without it (no users, or users under another
    # key) is the tolerant path's to judge.
    class SampleAnswer(msgspec.Struct, gc=False):
        status: Literal["success"]
        smtp_list: list[SampleUser]
        message: str = ""

    class TableAnswer(msgspec.Struct, gc=False):
        status: Literal["success"]
        smtp_list: list[SmtpUser]
        message: str = ""

    by_sample = msgspec.json.Decoder(SampleAnswer).decode
    by_table = msgspec.json.Decoder(TableAnswer).decode
    convert = msgspec.convert
    users_type = list[SmtpUser]

    def decode(body: bytes) -> SmtpUserList | None:
        """The answer, or None if it is anything but a well-formed success."""
        try:
            answer = by_sample(body)
        except Exception:  # any surprise: the tolerant path decides
            answer = None
        if answer is not None:
            try:
                users = convert(answer.smtp_list, users_type, from_attributes=True)
            except Exception:
                return None
            return SmtpUserList(users, answer.message)
        if b'"smtp_password"' not in body:
            return None
        try:
            table = by_table(body)
        except Exception:
            return None
        return SmtpUserList(table.smtp_list, table.message)

    return decode
