"""How one request to the writers is retried and failed over, written once for both transports.

``exchange`` is a generator that yields what to do (``Call`` a URL, or ``Sleep``) and is sent what a call
produced (``Outcome``); it returns the answer's JSON or raises. The sync and async producers only carry
out its steps, so the retry rules live here, pure and tested without a network.

The rules: an answer of 200 is done. 408, 429, every 5xx (a proxy's too: the request's fate is
unknown), a timeout and a refused or broken connection are retried with the same body and headers (so
with the same sequence: the writer acknowledges a sequence it already committed as a duplicate, which
makes every retry safe), on the next URL, after the longer of ``Retry-After`` and a jittered exponential
backoff (cut short at the deadline), until the delivery timeout. Any other status is final: the writer
refused the request as sent, and sending it again would get the same answer.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import random
import re
import time
import urllib.parse
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

RETRIED_4XX = frozenset({408, 429})
_DIGITS = re.compile(r"[0-9]+")


class ClientError(Exception):
    """Base of what the client raises."""


class Rejected(ClientError):
    """The writer refused the request with a final status; ``body`` is its JSON error, when it sent one."""

    def __init__(self, status: int, body: dict[str, Any] | None, url: str) -> None:
        self.status = status
        self.body = body or {}
        self.url = url
        super().__init__(f"{url} answered {status}: {self.body.get('error', 'no error message')}")


class DeliveryFailed(ClientError):
    """No writer acknowledged the request within the delivery timeout; ``last`` says what happened last."""

    def __init__(self, message: str, *, attempts: int, last: str) -> None:
        self.attempts = attempts
        self.last = last
        super().__init__(f"{message} after {attempts} attempt(s); last: {last}")


@dataclass(frozen=True)
class RetryPolicy:
    """Limits of one delivery: its total time and the backoff between attempts."""

    delivery_timeout: float = 120.0
    backoff_initial: float = 0.05
    backoff_max: float = 5.0

    def __post_init__(self) -> None:
        if self.delivery_timeout <= 0 or self.backoff_initial <= 0 or self.backoff_max < self.backoff_initial:
            raise ValueError("delivery_timeout and backoff_initial must be positive, backoff_max >= initial")


@dataclass(frozen=True)
class Call:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None = None


@dataclass(frozen=True)
class Sleep:
    seconds: float


@dataclass(frozen=True)
class Outcome:
    """One attempt's result: an answer (``status``, its JSON ``body``, ``Retry-After``) or a transport
    ``error`` (``status`` None: refused, reset, timed out)."""

    status: int | None
    body: dict[str, Any] | None = None
    retry_after: str | None = None
    error: str | None = None

    def describe(self, url: str) -> str:
        if self.status is None:
            return f"{url}: {self.error}"
        return f"{url} answered {self.status}: {(self.body or {}).get('error', '')}".rstrip(": ")


@dataclass(frozen=True)
class Answer:
    """The 200 answer's JSON body, and how many attempts it took."""

    body: dict[str, Any]
    attempts: int


Exchange = Generator[Call | Sleep, Outcome | None, Answer]


@dataclass
class Endpoints:
    """The writers' base URLs; ``current`` moves to the next one after a failed attempt."""

    urls: Sequence[str]
    index: int = field(default=0)

    def __post_init__(self) -> None:
        self.urls = [url.rstrip("/") for url in self.urls]
        if not self.urls:
            raise ValueError("at least one writer URL is needed")
        for url in self.urls:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"writer URL {url!r} must start with http:// or https://")
            if "@" in urllib.parse.urlsplit(url).netloc:
                # It would not authenticate (the writer takes a bearer token) and would end up in messages.
                raise ValueError("a writer URL must not hold credentials: pass the bearer token as token=")

    @property
    def current(self) -> str:
        return self.urls[self.index]

    def rotate(self) -> None:
        self.index = (self.index + 1) % len(self.urls)


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date (RFC 9110, 10.2.3); None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    if _DIGITS.fullmatch(value):  # ASCII digits only: "²".isdigit() is true
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000": UTC by RFC 5322, not local time
        when = when.replace(tzinfo=dt.UTC)
    seconds: float = when.timestamp() - (time.time() if now is None else now)
    return max(0.0, seconds)


def backoff(attempt: int, policy: RetryPolicy, jitter: float) -> float:
    """Exponential backoff for the ``attempt``-th retry (1-based), jittered between half and all of it
    (``jitter`` in [0, 1)) so that producers refused together do not come back together."""
    ceiling = min(policy.backoff_max, policy.backoff_initial * 2.0 ** (attempt - 1))
    return ceiling * (0.5 + jitter / 2)


def exchange(
    endpoints: Endpoints,
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes | None,
    *,
    policy: RetryPolicy,
    clock: Callable[[], float] = time.monotonic,
    jitter: Callable[[], float] = random.random,
) -> Exchange:
    """Deliver one request (see the module's rules); return the 200 answer."""
    deadline = clock() + policy.delivery_timeout
    attempts = 0
    while True:
        url = endpoints.current + path
        attempts += 1
        outcome = yield Call(method, url, headers, body)
        assert outcome is not None, "the driver must send the call's outcome"
        if outcome.status == 200:
            return Answer(outcome.body or {}, attempts)
        if outcome.status is not None and outcome.status < 500 and outcome.status not in RETRIED_4XX:
            raise Rejected(outcome.status, outcome.body, url)
        # At least the backoff (a Retry-After of 0 must not spin), never past the deadline: another URL
        # may answer sooner than the one that asked us to wait.
        pause = backoff(attempts, policy, jitter())
        wait = max(retry_after_seconds(outcome.retry_after) or 0.0, pause)
        left = deadline - clock()
        if left < pause:
            raise DeliveryFailed(
                f"not delivered within {policy.delivery_timeout:g} s",
                attempts=attempts,
                last=outcome.describe(url),
            )
        endpoints.rotate()
        yield Sleep(min(wait, left))
