"""What to compact, decided from the table's active files and the policy. Pure: no I/O, no clock.

delta-rs compacts per partition and takes one size, ``target_size``: files no larger than it are candidates,
and they are packed into new files no larger than it. So the plan chooses, per partition, whether to run now
(the triggers) and which ``target_size`` to pass (the tier rule), never individual files:

- Triggers, on small files older than ``minAge``: at least ``minSmallFiles`` of them, or ``minSmallBytes``
  of them, or the oldest has waited ``maxInterval``. A partition where nothing was written for
  ``maxInterval`` is consolidated into ``targetFileSize`` files once (``idle``).
- Tier rule (size-tiered compaction): the largest ``target_size`` at which an output is at least ``fanIn``
  times the largest file merged into it.
- ``targetFileSize`` is the size of the files compaction *writes*. delta-rs packs input bytes, and many small
  files compress into far fewer bytes once merged, so the size passed to delta-rs is the target divided by the
  table's observed compression (``compression_ratio``), with a 10% margin, and kept below every file that
  already reached the target (delta-rs would otherwise rewrite those). A file is therefore
  rewritten only when it becomes a ``fanIn`` times smaller part of something, which bounds how often the
  same bytes are rewritten (write amplification) while small files still merge within ``maxInterval``.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import accumulate

from deltaingest.config import CompactionSpec
from deltaingest.table.facts import DataFile, Partition

_MARGIN = 1.1  # aim a little above the target: a file that just misses it would be compacted again
_MIN_COMPRESSION = 1 / 16


@dataclass(frozen=True)
class PartitionPlan:
    """Compact one partition now: delta-rs merges its files of at most ``target_size`` bytes."""

    partition: Partition
    target_size: int
    reason: str
    candidates: tuple[DataFile, ...]  # the files delta-rs will consider (size <= target_size)

    @property
    def candidate_bytes(self) -> int:
        return sum(f.size for f in self.candidates)


@dataclass(frozen=True)
class Skipped:
    partition: Partition
    reason: str


@dataclass(frozen=True)
class CompactionPlan:
    partitions: tuple[PartitionPlan, ...]
    skipped: tuple[Skipped, ...]


def plan_compaction(
    files: Iterable[DataFile],
    policy: CompactionSpec,
    *,
    now: float,
    force: bool = False,
    compression: float = 1.0,
) -> CompactionPlan:
    """Which partitions to compact now and why; ``force`` ignores triggers, minimum age and the tier rule.

    ``compression`` is output bytes per input byte of earlier compactions (``compression_ratio``).
    """
    by_partition: dict[Partition, list[DataFile]] = {}
    for file in files:
        by_partition.setdefault(file.partition, []).append(file)
    plans: list[PartitionPlan] = []
    skipped: list[Skipped] = []
    for partition in sorted(by_partition, key=_sort_key):
        decision = _plan_partition(
            by_partition[partition], policy, now=now, force=force, compression=compression
        )
        if isinstance(decision, PartitionPlan):
            plans.append(decision)
        else:
            skipped.append(Skipped(partition, decision))
    return CompactionPlan(tuple(plans), tuple(skipped))


def _plan_partition(
    files: list[DataFile], policy: CompactionSpec, *, now: float, force: bool, compression: float
) -> PartitionPlan | str:
    partition = files[0].partition
    target = input_target(policy.target_file_size, compression, [f.size for f in files])
    if force:
        return _plan_at(partition, files, target, "forced") or "fewer than two files can be merged"
    if now - max(f.modified for f in files) >= policy.max_interval_seconds:
        idle = _plan_at(partition, files, target, f"idle for {policy.max_interval_seconds:g}s")
        if idle is not None:
            return idle
    size = choose_target_size([f.size for f in files if f.size <= target], policy, limit=target)
    if size is None:
        return "nothing worth merging (no output would be fanIn times its largest input)"
    eligible = [
        f
        for f in files
        if f.size <= size and f.size < policy.small_file_size and now - f.modified >= policy.min_age_seconds
    ]
    reason = trigger(eligible, policy, now=now)
    if reason is None:
        waited = max((now - f.modified for f in eligible), default=0.0)
        return (
            f"below triggers: {len(eligible)} small files, {sum(f.size for f in eligible)} bytes, "
            f"oldest waited {waited:.0f}s"
        )
    plan = _plan_at(partition, files, size, reason)
    assert plan is not None  # choose_target_size only returns sizes at which two files merge
    return plan


def trigger(eligible: Sequence[DataFile], policy: CompactionSpec, *, now: float) -> str | None:
    """The first trigger that fires for these small files, as a reason; None when none does."""
    if len(eligible) >= policy.min_small_files:
        return f"{len(eligible)} small files >= minSmallFiles {policy.min_small_files}"
    total = sum(f.size for f in eligible)
    if total >= policy.min_small_bytes:
        return f"{total} bytes of small files >= minSmallBytes {policy.min_small_bytes}"
    if len(eligible) >= 2:
        waited = now - min(f.modified for f in eligible)
        if waited >= policy.max_interval_seconds:
            return f"a small file waited {waited:.0f}s >= maxInterval {policy.max_interval_seconds:g}s"
    return None


def input_target(target: int, compression: float, sizes: Sequence[int]) -> int:
    """The largest ``target_size`` delta-rs may get in a partition with files of these sizes: enough input
    for an output of ``target`` (plus 10%) at this compression, and below every file already that large."""
    scaled = int(target * _MARGIN / min(max(compression, _MIN_COMPRESSION), 1.0))
    done = [s for s in sizes if s >= target]
    return min(scaled, min(done) - 1) if done else scaled


def compression_ratio(compactions: Iterable[tuple[int, int]]) -> float:
    """Output bytes per input byte over earlier compactions given as (bytes read, bytes written); 1.0
    without any. Bounded to [1/16, 1]: merging never makes data larger worth planning for."""
    read = written = 0
    for removed, added in compactions:
        read, written = read + removed, written + added
    if read <= 0 or written <= 0:
        return 1.0
    return min(max(written / read, _MIN_COMPRESSION), 1.0)


def choose_target_size(
    sizes: Sequence[int], policy: CompactionSpec, *, limit: int | None = None
) -> int | None:
    """The largest ``target_size`` up to ``limit`` (default: the target file size) worth passing to delta-rs
    for files of these sizes, or None.

    At T, delta-rs merges the files of at most T bytes into outputs of at most T bytes, about min(their
    sum, T) each. T is worth it when that output is at least ``fanIn`` times the largest file it takes in.
    The values of T worth trying are one byte below each file size (the largest T that leaves that file
    and all larger ones out), the total, and the target. When no T passes, a ratio of 2 is accepted, so
    that a leftover mid-size file cannot hold back the merging of the small files around it for good.
    """
    target = policy.target_file_size if limit is None else limit
    ordered = sorted(s for s in sizes if s <= target)
    if len(ordered) < 2:
        return None
    sums = list(accumulate(ordered))
    tries = sorted({min(s - 1, target) for s in ordered[2:]} | {min(sums[-1], target), target}, reverse=True)
    for ratio in (policy.fan_in, 2):
        for size in tries:
            count = bisect.bisect_right(ordered, size)
            if count < 2 or ordered[0] + ordered[1] > size:
                continue
            output = min(sums[count - 1], size)
            if output >= ratio * ordered[count - 1]:
                return size
    return None


def _plan_at(partition: Partition, files: list[DataFile], size: int, reason: str) -> PartitionPlan | None:
    """A plan at ``size`` if delta-rs would merge anything there: two candidates must fit one output."""
    candidates = sorted((f for f in files if f.size <= size), key=lambda f: f.size)
    if len(candidates) < 2 or candidates[0].size + candidates[1].size > size:
        return None
    return PartitionPlan(partition, size, reason, tuple(candidates))


def partition_filters(partition: Partition) -> list[tuple[str, str, str]]:
    """delta-rs partition filters selecting exactly this partition (null is matched by the empty string)."""
    return [(column, "=", "" if value is None else value) for column, value in partition]


def describe(partition: Partition) -> str:
    return "/".join(f"{c}={'null' if v is None else v}" for c, v in partition) or "(table)"


def _sort_key(partition: Partition) -> tuple[tuple[str, str], ...]:
    return tuple((c, "" if v is None else v) for c, v in partition)
