"""The Arvados backend: runs are container requests, state lives in Arvados, every call with the caller's token."""
