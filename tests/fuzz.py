"""``make fuzz``: the property tests with random seeds and a large budget, for as long as ``FUZZ_SECONDS``.

Rounds alternate between the decoders' properties (``tests/unit/test_decode_properties.py``, and OTLP's in
``tests/unit/test_otlp.py``) and the HTTP property against a live writer on SeaweedFS
(``tests/integration/test_writer_properties.py``: NDJSON, JSON, gzip and Arrow IPC bodies, damaged; never
a 5xx, never a hang, the table holds exactly the acknowledged rows, dead letters included). Each round is
one pytest run with a fresh ``--hypothesis-seed`` and ``FUZZ_CHUNK`` examples per property; the rounds go
on until every property has had ``FUZZ_EXAMPLES`` examples or ``FUZZ_SECONDS`` have passed. A failing
round's seed, log and the command that replays it are printed; the run ends with a JSON summary (answers
by status code over HTTP) and exits 1 if any failed.

    FUZZ_SECONDS=1800 make fuzz                          # the defaults: 30 minutes, 20,000 per property
    HYPOTHESIS_PROFILE=fuzz FUZZ_EXAMPLES=500 .venv/bin/pytest <test> --hypothesis-seed=<seed>   # replay
"""

from __future__ import annotations

import collections
import json
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

OUT = Path(".fuzz")


@dataclass
class Target:
    name: str
    tests: list[str]
    chunk: int
    examples: int = 0
    rounds: int = 0


@dataclass
class Run:
    targets: list[Target]
    budget: int
    deadline: float
    answers: collections.Counter[str] = field(default_factory=collections.Counter)
    failures: list[dict[str, object]] = field(default_factory=list)

    def next_target(self) -> Target | None:
        left = [t for t in self.targets if t.examples < self.budget]
        return min(left, key=lambda t: t.examples / self.budget) if left else None


def _round(run: Run, target: Target, seed: int) -> None:
    report = OUT / f"answers-{seed}.jsonl"
    chunk = min(target.chunk, run.budget - target.examples)
    env = {
        **os.environ,
        "HYPOTHESIS_PROFILE": "fuzz",
        "FUZZ_EXAMPLES": str(chunk),
        "FUZZ_REPORT": str(report),
    }
    command = [
        sys.executable,
        "-m",
        "pytest",
        *target.tests,
        f"--hypothesis-seed={seed}",
        "-q",
        "-p",
        "no:cacheprovider",
    ]
    started = time.monotonic()
    # A round that outlives the run by far is a hang: stopped, and reported with its seed like a failure.
    timeout = max(run.deadline - started, 0) + 900
    log = OUT / f"{target.name}-{seed}.log"
    with log.open("wb") as out:
        try:
            code = subprocess.run(
                command, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=timeout, check=False
            ).returncode
        except subprocess.TimeoutExpired:
            code = -1
    target.rounds += 1
    target.examples += chunk  # searched, failed or not: the next round goes on with a new seed
    for line in report.read_text().splitlines() if report.exists() else []:
        run.answers.update(json.loads(line)["answers"])
    replay = f"HYPOTHESIS_PROFILE=fuzz FUZZ_EXAMPLES={chunk} {' '.join(command[2:])}"
    verdict = "passed" if code == 0 else ("HUNG" if code == -1 else "FAILED")
    took = time.monotonic() - started
    print(f"{target.name}: seed {seed}, {chunk} examples per property, {verdict} in {took:.0f}s", flush=True)
    if code != 0:
        run.failures.append({"target": target.name, "seed": seed, "log": str(log), "replay": replay})
        print(f"  log: {log}\n  replay: {replay}", flush=True)


def main() -> int:
    seconds = float(os.environ.get("FUZZ_SECONDS", "1800"))
    budget = int(os.environ.get("FUZZ_EXAMPLES", "20000"))
    chunk = int(os.environ.get("FUZZ_CHUNK", "1000"))
    OUT.mkdir(exist_ok=True)
    targets = [
        Target(
            "decode", ["tests/unit/test_decode_properties.py", "tests/unit/test_otlp.py"], chunk=chunk * 2
        ),
        Target("http", ["tests/integration/test_writer_properties.py"], chunk=chunk // 2),
    ]
    started = time.monotonic()
    run = Run(targets, budget, started + seconds)
    seeds = random.SystemRandom()
    while time.monotonic() < run.deadline and (target := run.next_target()) is not None:
        _round(run, target, seeds.randrange(2**32))
    summary = {
        "seconds": round(time.monotonic() - started),
        "examples_per_property": {t.name: t.examples for t in targets},
        "rounds": {t.name: t.rounds for t in targets},
        "http_answers_by_status": dict(sorted(run.answers.items())),
        "failures": run.failures,
    }
    print(json.dumps(summary, indent=2))
    answers = ", ".join(f"{count} x {status}" for status, count in sorted(run.answers.items()))
    print(f"fuzz: {summary['seconds']}s, examples per property {summary['examples_per_property']}; "
          f"HTTP answers {answers or 'none'}; {len(run.failures)} failing round(s)")  # fmt: skip
    return 1 if run.failures else 0


if __name__ == "__main__":
    sys.exit(main())
