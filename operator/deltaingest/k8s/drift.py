"""Pure drift detection: does a child in the cluster still match what the operator rendered for it?"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

APPLIED_HASH = "deltaingest.io/applied-hash"
_EMPTY: tuple[Any, ...] = ({}, [], None)


def stamp(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest with a hash of itself, so a field dropped from the rendering is noticed and removed."""
    digest = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()[:16]
    meta = dict(manifest.get("metadata") or {})
    meta["annotations"] = {**(meta.get("annotations") or {}), APPLIED_HASH: digest}
    return {**manifest, "metadata": meta}


def _covers(actual: Any, desired: Any) -> bool:
    """True when every field of ``desired`` is in ``actual`` with an equal value (servers add defaults)."""
    if isinstance(desired, Mapping):
        # The API server leaves out empty lists and maps (omitempty): absent matches empty.
        return isinstance(actual, Mapping) and all(
            _covers(actual[key], value) if key in actual else value in _EMPTY
            for key, value in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(actual, list)
            and len(actual) == len(desired)
            and all(_covers(a, d) for a, d in zip(actual, desired, strict=True))
        )
    if isinstance(desired, bool) or isinstance(actual, bool):
        return actual is desired
    # Quantities come back as strings ("1" for 1); compare their text.
    return bool(actual == desired or str(actual) == str(desired))


def drift(stamped: Mapping[str, Any], actual: Mapping[str, Any] | None) -> str | None:
    """Why ``actual`` must be (re)applied, or ``None`` when it already matches."""
    if actual is None:
        return "missing"
    annotations = (actual.get("metadata") or {}).get("annotations") or {}
    wanted = (stamped.get("metadata") or {}).get("annotations", {}).get(APPLIED_HASH)
    if annotations.get(APPLIED_HASH) != wanted:
        return "rendering changed"
    for section in ("spec", "data", "metadata"):
        if section in stamped and not _covers(actual.get(section), stamped[section]):
            return f"{section} edited in the cluster"
    return None
