"""API tokens and the caller a request acts for."""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass
from typing import Any, Dict, Optional

from .errors import Unauthorized
from .records import Store

SYSTEM_USER_TAIL = "000000000000000"


@dataclass
class Caller:
    """Who a request acts for: the user record, the token as presented, and its authorization record."""

    user: Dict[str, Any]
    token: str
    authorization: Dict[str, Any]

    @property
    def uuid(self) -> str:
        """The user's uuid."""
        return self.user["uuid"]

    @property
    def is_admin(self) -> bool:
        """Whether the user is an admin."""
        return bool(self.user.get("is_admin"))


def v2_token(authorization: Dict[str, Any]) -> str:
    """The `v2/<uuid>/<secret>` form of an authorization's token."""
    return f"v2/{authorization['uuid']}/{authorization['api_token']}"


class Tokens:
    """Issues tokens (api_client_authorizations records) and resolves presented tokens to callers."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def issue(self, user_uuid: str, scopes: Optional[list] = None) -> Dict[str, Any]:
        """A new authorization for the user; `v2_token` of it is what clients send."""
        now = self.store.now()
        record = {
            "uuid": self.store.new_uuid("api_client_authorizations"),
            "api_token": "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(50)),
            "owner_uuid": user_uuid, "created_at": now, "modified_at": now, "modified_by_user_uuid": user_uuid,
            "expires_at": None, "last_used_at": None, "last_used_by_ip_address": None,
            "scopes": scopes or ["all"], "refreshes_at": None,
        }
        return self.store.insert("api_client_authorizations", record)

    def expire(self, authorization_uuid: Optional[str]) -> None:
        """Make a token stop working."""
        record = self.store.get("api_client_authorizations", authorization_uuid or "")
        if record is not None:
            record["expires_at"] = self.store.now()

    def caller(self, token: Optional[str]) -> Caller:
        """The caller for a token as presented (v2 or bare secret); Unauthorized if none or unknown."""
        if not token:
            raise Unauthorized()
        if token.startswith("v2/"):
            parts = token.split("/")
            if len(parts) < 3:
                raise Unauthorized()
            record = self.store.get("api_client_authorizations", parts[1])
            if record is None or record["api_token"] != parts[2]:
                raise Unauthorized()
        else:
            record = next(self.store.where("api_client_authorizations", api_token=token), None)
            if record is None:
                raise Unauthorized()
        if record.get("expires_at") is not None and record["expires_at"] <= self.store.now():
            raise Unauthorized()
        user = self.store.get("users", record["owner_uuid"])
        if user is None or not user.get("is_active"):
            raise Unauthorized()
        return Caller(user=user, token=token, authorization=record)
