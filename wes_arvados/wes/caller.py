"""Who a request acts for: the identity the web layer found, handed to the backend (`Backend.for_caller`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

# The one user everyone is when authentication is off.
ANONYMOUS_USER = "anonymous"


@dataclass(frozen=True)
class Caller:
    """An authenticated caller.

    `user` owns the runs it submits (the local backend shows a user only its own);
    `admin` sees and acts on every run; `read_only` may not submit or cancel.
    `token` is the credential as presented: a backend with users of its own
    (Arvados) acts with it, so that its permissions decide.
    """

    user: str
    admin: bool = False
    read_only: bool = False
    token: Optional[str] = None

    @property
    def owner_filter(self) -> Optional[str]:
        """The owner whose runs this caller may see; None for every run (an admin)."""
        return None if self.admin else self.user


def anonymous(token: Optional[str] = None) -> Caller:
    """The caller of a server without authentication of its own: one user for everyone."""
    return Caller(ANONYMOUS_USER, token=token)
