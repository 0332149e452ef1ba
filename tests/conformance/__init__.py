"""The CWL v1.2 conformance suite run with plain cwltool and through the WES server."""
