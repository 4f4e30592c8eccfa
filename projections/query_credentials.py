"""Who may use the query endpoint: credentials, and the token file the CLI finds them in.

The token file (``<data dir>/query-token``) holds a random password, created with mode 0600;
a token file that others may read is refused, as ssh refuses such a key. A deployment may name
the credentials in settings instead. A *reader*'s statements go through
:mod:`projections.readonly_sql`; a *writer* (``okr-ledger serve-store``'s workers) may run any
statement and insert.
"""

import hmac
import ipaddress
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from schemas.errors import ConfigurationError

TOKEN_FILE = "query-token"
WRITER_TOKEN_FILE = "store-writer-token"
MAX_TOKEN_BYTES = 1024
Role = Literal["reader", "writer"]


@dataclass(frozen=True, slots=True)
class Credential:
    """A user name and password the endpoint accepts, and what they may do."""

    user: str
    password: str
    role: Role = "reader"

    def matches(self, user: str, password: str) -> bool:
        """Both equal, compared in constant time (both compared, whatever the first gave).
        A text holding surrogates (header bytes that are not UTF-8, as aiohttp decodes them;
        the environment's, as Python does) is compared as it came: never an error."""
        same_user = same_text(user, self.user)
        same_password = same_text(password, self.password)
        return same_user & same_password


def same_text(a: str, b: str) -> bool:
    """``a == b`` in constant time, for any two texts (``hmac.compare_digest`` takes ASCII
    text only): compared as UTF-8, a surrogate (undecodable bytes) as it came."""
    return hmac.compare_digest(
        a.encode("utf-8", "surrogatepass"), b.encode("utf-8", "surrogatepass")
    )


def ensure_token(path: Path) -> str:
    """The token in ``path``; a new random one (mode 0600) when there is none yet."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return read_token(path)
    with os.fdopen(descriptor, "w") as file:
        file.write(secrets.token_urlsafe(32) + "\n")
    return read_token(path)


def read_token(path: Path) -> str:
    """The token in ``path``, if only its owner may read or change it."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        raise ConfigurationError(
            f"no query token at {path}: `okr-ledger init` or the worker creates it "
            "(or set OKR_QUERY_PASSWORD)"
        ) from None
    if not stat.S_ISREG(info.st_mode) or info.st_mode & 0o077:
        raise ConfigurationError(
            f"the query token {path} may be read or changed by others "
            f"(mode {stat.filemode(info.st_mode)}): run `chmod 600 {path}`"
        )
    token = path.read_bytes()[: MAX_TOKEN_BYTES + 1].decode("utf-8", errors="replace").strip()
    if not token or len(token) > MAX_TOKEN_BYTES:
        raise ConfigurationError(f"the query token {path} is empty or too long")
    return token


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine only (127.0.0.0/8, ::1, ``localhost``)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
