"""Status and event messages as one clean line: the cause first, then what to set in the spec.

delta-rs reports a failure as a chain over several lines, coloured with ANSI escapes, with the store's XML
answer inside; botocore wraps the same XML in its own sentence. ``kubectl describe`` prints a condition's
message verbatim, so the operator reduces each error to one line of at most ``LIMIT`` characters. Pure:
text in, text out.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

LIMIT = 300
ELLIPSIS = "…"
# A secret this short would blank out ordinary words; real access keys and secret keys are far longer.
_MIN_SECRET = 6

Service = Literal["s3", "dynamodb"]

# ANSI/VT100 sequences: CSI (colours), OSC (titles, links) and two-character escapes.
_ESCAPES = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")
_ACCESS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b")
_URL_USERINFO = re.compile(r"(\b[a-z][a-z0-9+.-]*://)[^/\s@]+@", re.IGNORECASE)
# A query string can carry a presigned request's credential and signature; the path says enough.
_URL_QUERY = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^\s?\"'<>]*)\?[^\s\"'<>]*", re.IGNORECASE)

# An S3 or IAM error document: only its code and message are worth showing.
_XML_ERROR = re.compile(r"(?:<\?xml[^>]*\?>\s*)?<(Error|ErrorResponse)>.*?</\1>", re.DOTALL)
_XML_FIELD = re.compile(r"<(Code|Message)>([^<]*)</\1>")
# A Rust backtrace delta-rs appends to some errors ("   0: <unknown>", "at ./nptl/...").
_BACKTRACE = re.compile(r"\n\s*0: .*", re.DOTALL)
# delta-rs puts each link of its chain on a line of its own after "↳", and breaks at every ": " inside a
# link too, which scatters object_store's retry settings over three links. Those settings and the timings
# vary between runs and explain nothing.
_LINK = re.compile(r"\s*(?:↳|\n| -> )\s*")
_RETRY_SETTINGS = re.compile(r",\s*max_retries\W+\d+,\s*retry_timeout\W+\d+\s*s\s*-")
_NOISE = re.compile(
    r" in \d+(?:\.\d+)?(?:ns|µs|us|ms|s)\b| - Server returned non-2xx status code"
    r"|Error performing (?=[A-Z]+ \w+://)"  # "GET http://..." says the same
)
_WRAPPER = re.compile(
    r"^(?:Kernel error|Generic (?:S3|delta kernel) error|HTTP error|error sending request"
    r"|Error performing list request)(?::\s*|$)"
)
# A request to the store: what follows it is the store's (or the OS's) answer.
_REQUEST = re.compile(r"^[A-Z]+ \w+://")


@dataclass(frozen=True)
class _Rule:
    cause: str
    pattern: str  # searched case-insensitively in the whole chain
    hints: Mapping[Service, str]  # the rule applies only to the services it has a hint for


# First match wins: the order settles errors that match several (an unreachable metadata endpoint is a
# missing credential, not a store outage; rejected keys also come back as 403).
_RULES = (
    _Rule(
        "No credentials",
        r"169\.254\.169\.254|169\.254\.170\.2|/latest/api/token|/latest/meta-data|"
        r"unable to locate credentials|no credentials|missing credentials",
        {
            "s3": "set spec.storage.credentials, or give the operator and the workloads "
            "(spec.serviceAccountName) an IAM role",
            "dynamodb": "the lock table uses the store's credentials: set spec.storage.credentials, or give "
            "the operator and the workloads (spec.serviceAccountName) an IAM role",
        },
    ),
    _Rule(
        "Credentials rejected",
        r"InvalidAccessKeyId|SignatureDoesNotMatch|InvalidClientTokenId|UnrecognizedClientException|"
        r"security token included in the request is (?:invalid|expired)|ExpiredToken",
        {
            "s3": "fix the keys in the Secret named by spec.storage.credentials",
            "dynamodb": "fix the keys in the Secret named by spec.storage.credentials (the lock table uses "
            "them too)",
        },
    ),
    _Rule(
        "Access denied",
        r"AccessDenied|not authorized to perform|lacked the necessary privileges|403 Forbidden|\(403\)",
        {
            "s3": "grant the identity in use s3:ListBucket and s3:GetObject on the table's prefix (the "
            "workloads also need PutObject and DeleteObject)",
            "dynamodb": "grant dynamodb:DescribeTable on the lock table (and CreateTable, UpdateTimeToLive "
            "for spec.locking.createTable; GetItem, UpdateItem for the workloads)",
        },
    ),
    _Rule(
        "Bucket does not exist",
        r"NoSuchBucket|specified bucket does not exist",
        {
            "s3": "create the bucket or check spec.storage.endpoint (spec.table.uri cannot change)",
        },
    ),
    _Rule(
        "No Delta table",
        r"No files in log segment|not a Delta table|No snapshot or version 0 found",
        {
            "s3": "check spec.table.uri, or set spec.table.schema (and createIfMissing: true) so the "
            "writer creates it",
        },
    ),
    _Rule(
        "Lock table does not exist",
        r"ResourceNotFoundException|does not exist and creating it is turned off",
        {
            "dynamodb": "set spec.locking.createTable: true or create the table (key lockId, type S); "
            "check spec.locking.tableName and region",
        },
    ),
    _Rule(
        "Endpoint unreachable",
        r"connection refused|dns error|failed to lookup address|name or service not known|"
        r"nodename nor servname|temporary failure in name resolution|could not connect to the endpoint|"
        r"tcp connect error|connection reset|network is unreachable|no route to host",
        {
            "s3": "check spec.storage.endpoint and that the store is up and reachable from the operator",
            "dynamodb": "check spec.locking.endpoint and region, and that DynamoDB is reachable from the "
            "operator",
        },
    ),
    _Rule(
        "Endpoint timed out",
        r"timed out|read timeout|connect timeout|deadline has elapsed",
        {
            "s3": "check spec.storage.endpoint, and that no NetworkPolicy or firewall drops the traffic",
            "dynamodb": "check spec.locking.endpoint and region, and that no NetworkPolicy or firewall drops "
            "the traffic",
        },
    ),
)


def _plain(text: str) -> str:
    """``text`` without terminal escapes, access key ids, passwords in URLs or query strings."""
    text = _ESCAPES.sub("", text)
    text = _ACCESS_KEY_ID.sub("***", text)
    text = _URL_USERINFO.sub(r"\1***@", text)
    return _URL_QUERY.sub(r"\1", text)


def _shorten(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` characters, cut at a word with an ellipsis."""
    if len(text) <= limit:
        return text
    kept = text[: max(limit - len(ELLIPSIS), 0)]
    space = kept.rfind(" ")
    if space > len(kept) // 2:  # at a word, unless that loses half
        kept = kept[:space]
    return kept.rstrip(" ,;:.-(") + ELLIPSIS


def _innermost(links: list[str], limit: int) -> str:
    """The innermost links of a chain that fit in ``limit`` characters, an ellipsis for those left out."""
    for start in range(len(links)):
        text = (ELLIPSIS if start else "") + ": ".join(links[start:])
        if len(text) <= limit:
            return text
    last = links[-1]  # too long on its own: its end, from a word
    kept = last[len(last) - max(limit - len(ELLIPSIS), 0) :]
    space = kept.find(" ")
    return ELLIPSIS + (kept[space + 1 :] if 0 <= space < len(kept) // 2 else kept)


def one_line(text: str, limit: int = LIMIT) -> str:
    """``text`` as one line of at most ``limit`` characters: escapes and control characters removed,
    whitespace collapsed, credentials in it blanked, cut cleanly with an ellipsis."""
    text = _plain(text)
    # Cc/Cf/...: newlines, tabs, NUL, bidi overrides; Z*: every kind of space, line and paragraph separator.
    text = "".join(" " if unicodedata.category(char)[0] in "CZ" else char for char in text)
    return _shorten(" ".join(text.split()), limit)


def _chain(text: str) -> list[str]:
    """The links of an error chain, outermost first, without generic wrappers, timings or XML."""

    def xml(match: re.Match[str]) -> str:
        fields = dict(_XML_FIELD.findall(match.group(0)))
        return ": ".join(fields[name] for name in ("Code", "Message") if fields.get(name)) or match.group(0)

    text = _XML_ERROR.sub(xml, _BACKTRACE.sub("", _plain(text)))
    text = _NOISE.sub("", _RETRY_SETTINGS.sub("\n", text))
    links = (_WRAPPER.sub("", link.strip()).strip() for link in _LINK.split(text))
    return [link for link in links if link]


def explain(error: BaseException | str, doing: str, *, service: Service, secrets: Iterable[str] = ()) -> str:
    """One line for a failure while ``doing`` something (``"reading s3://lake/t"``) with ``service``.

    A common failure reads ``<cause> (<doing>): <what to set in the spec>. Error: <innermost links>``; any
    other error puts its innermost cause first. ``secrets`` (credential values) are blanked wherever they
    appear. At most ``LIMIT`` characters.
    """
    text = str(error)
    for secret in secrets:
        if len(secret) >= _MIN_SECRET:
            text = text.replace(secret, "***")
    links = _chain(text) or [type(error).__name__ if isinstance(error, BaseException) else "unknown error"]
    requests = [i for i, link in enumerate(links) if _REQUEST.match(link)]
    # Outer links before the innermost request are delta-rs' wrapping of it.
    start = requests[-1] if requests else 0
    whole = " ".join(links)
    for rule in _RULES:
        hint = rule.hints.get(service)
        if hint and re.search(rule.pattern, whole, re.IGNORECASE):
            head = f"{rule.cause} ({doing}): {hint}. Error: "
            return one_line(head + _innermost(links[start:], LIMIT - len(head)))
    if requests and start + 1 < len(links):  # the answer first, the request it answered as context
        cause, context = links[start + 1 :], f"{doing}; {links[start]}"
    else:
        cause, context = links[start:], doing
    tail = f" ({context})"
    return one_line(_innermost(cause, max(LIMIT - len(tail), LIMIT // 2)) + tail)
