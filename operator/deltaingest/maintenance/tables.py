"""Which tables the maintenance runs keep: the table, and with ``invalidRows: deadLetter`` its dead-letter
table, each with the policies for it."""

from __future__ import annotations

from dataclasses import dataclass

from deltaingest.config import CompactionSpec, Settings, VacuumSpec, dead_letter_policies
from deltaingest.table.hot import locate, locate_dead_letters


@dataclass(frozen=True)
class Kept:
    """One table the compaction and vacuum runs keep. Its maintenance lease is keyed by its own URI."""

    uri: str
    options: dict[str, str]
    compaction: CompactionSpec
    vacuum: VacuumSpec
    dead_letters: bool = False


def kept_tables(settings: Settings) -> list[Kept]:
    """The table first, then its dead-letter table when the writer has one."""
    uri, options = locate(settings)
    tables = [Kept(uri, options, settings.compaction, settings.vacuum)]
    located = locate_dead_letters(settings)
    if located is not None:
        tables.append(Kept(*located, *dead_letter_policies(settings), dead_letters=True))
    return tables
