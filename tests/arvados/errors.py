"""The errors the double answers with, each carrying the HTTP status the API server uses."""

from __future__ import annotations

from typing import List


class ApiError(Exception):
    """An error answered as `{"errors": [...], "error_token": ...}` with `status`.

    Messages follow the API server's wording, e.g. Rails' "Owner uuid cannot be ..." or
    `#<ArvadosModel::UnresolvableContainerError: ...>` for an exception without record errors.
    """

    status = 422

    def __init__(self, *messages: str) -> None:
        super().__init__(*messages)
        self.messages: List[str] = list(messages) or [self.default_message()]

    def default_message(self) -> str:
        """The message Rails renders for this error when the record carries none (`e.inspect`)."""
        return f"#<{self.rails_class}: {self.rails_class}>"

    rails_class = "ArgumentError"


class Invalid(ApiError):
    """422: a validation failed (ActiveRecord::RecordInvalid) or an argument was bad."""

    rails_class = "ActiveRecord::RecordInvalid"


class UnresolvableContainer(ApiError):
    """422: a container request cannot be turned into a container (image or mount not found)."""

    rails_class = "ArvadosModel::UnresolvableContainerError"

    def __init__(self, message: str) -> None:
        super().__init__(f"#<{self.rails_class}: {message}>")


class PermissionDenied(ApiError):
    """403: the caller may not do this."""

    status = 403
    rails_class = "ArvadosModel::PermissionDeniedError"


class Unauthorized(ApiError):
    """401: no valid token."""

    status = 401

    def default_message(self) -> str:
        return "Not logged in"


class NotFound(ApiError):
    """404: no such path, or no such object readable by the caller."""

    status = 404

    def default_message(self) -> str:
        return "Path not found"
