"""Storage options for delta-rs: the standard AWS environment plus explicit overrides; never logged raw."""

from __future__ import annotations

import os
from collections.abc import Mapping

# Environment variables delta-rs' object store understands, passed through when set.
_ENV_KEYS = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_PROFILE",
    "AWS_ALLOW_HTTP",
    "AWS_S3_ALLOW_UNSAFE_RENAME",
    "AWS_VIRTUAL_HOSTED_STYLE_REQUEST",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
)
_SECRET_MARKERS = ("SECRET", "TOKEN", "PASSWORD", "KEY_ID", "CREDENTIAL")


def is_object_store(uri: str) -> bool:
    """True for URIs delta-rs reaches through an object store rather than the local filesystem."""
    return "://" in uri and not uri.startswith("file://")


def storage_options(
    uri: str, *, overrides: Mapping[str, str] | None = None, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Options for ``DeltaTable``/``write_deltalake``: the AWS variables that are set, then the overrides.

    An ``http://`` endpoint implies ``AWS_ALLOW_HTTP`` (MinIO and SeaweedFS in a cluster usually speak plain
    HTTP), and a region defaults to us-east-1 because S3-compatible stores need one to sign requests.
    """
    if not is_object_store(uri):
        return dict(overrides or {})
    env = os.environ if environ is None else environ
    options = {key: env[key] for key in _ENV_KEYS if env.get(key)}
    if "AWS_ENDPOINT_URL_S3" in options:
        options["AWS_ENDPOINT_URL"] = options.pop("AWS_ENDPOINT_URL_S3")
    options.update(overrides or {})
    endpoint = options.get("AWS_ENDPOINT_URL", "")
    if endpoint.startswith("http://"):
        options.setdefault("AWS_ALLOW_HTTP", "true")
    if "AWS_REGION" not in options:
        options["AWS_REGION"] = options.pop("AWS_DEFAULT_REGION", "us-east-1")
    options.pop("AWS_DEFAULT_REGION", None)
    return options


def _is_secret(key: str) -> bool:
    return any(marker in key.upper() for marker in _SECRET_MARKERS)


def redact(options: Mapping[str, str]) -> dict[str, str]:
    """A copy safe to log: values of anything that looks like a credential are replaced."""
    return {key: ("***" if _is_secret(key) else value) for key, value in options.items()}


def secret_values(options: Mapping[str, str]) -> list[str]:
    """The values ``redact`` hides, to blank them out of error text that might echo them."""
    return [value for key, value in options.items() if _is_secret(key) and value]


def parse_key_values(pairs: list[str]) -> dict[str, str]:
    """``--storage-option KEY=VALUE`` arguments to a dict, with a clear error for a malformed one."""
    result: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"expected KEY=VALUE, got {pair!r}")
        result[key] = value
    return result
