"""The series selectors of a PromQL expression: which metrics (and which of their labels) it reads."""

from __future__ import annotations

import re
from dataclasses import dataclass

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
# Label lists of aggregations and vector matching, and range or subquery durations: no metric names there.
_LABEL_LISTS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_RANGES = re.compile(r"\[[^\]]*\]")
_TOKEN = re.compile(r"(?<![\w.])([a-zA-Z_:][\w:]*)\s*(\{[^}]*\})?\s*(\()?")
_MATCHER = re.compile(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}


@dataclass(frozen=True)
class Selector:
    metric: str
    labels: frozenset[str]  # the label names its matchers test


def selectors(expr: str) -> set[Selector]:
    """Every ``metric{matchers}`` of ``expr``; function names, keywords and label lists are not metrics."""
    text = _RANGES.sub("", _LABEL_LISTS.sub(" ", _STRING.sub('""', expr)))
    found: set[Selector] = set()
    for match in _TOKEN.finditer(text):
        name, matchers, call = match.groups()
        if call or name.lower() in _KEYWORDS:
            continue
        found.add(Selector(name, frozenset(_MATCHER.findall(matchers or ""))))
    return found
