"""Table upkeep off the request path: checkpoints (and, later, compaction and vacuum)."""
