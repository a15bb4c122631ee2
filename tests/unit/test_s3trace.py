"""The bench's S3 timing proxy names each request by its role in a commit."""

from __future__ import annotations

import pytest

from deltaingest.bench.s3trace import classify


@pytest.mark.parametrize(
    ("method", "path", "query", "kind"),
    [
        ("PUT", "/bench/t/part-00000-1f.snappy.parquet", "", "data_put"),
        ("PUT", "/bench/t/day=2024-05-01/part-00000-1f.snappy.parquet", "", "data_put"),
        ("PUT", "/bench/t/_delta_log/00000000000000000013.json", "", "log_put"),
        ("PUT", "/bench/t/_delta_log/00000000000000000010.checkpoint.parquet", "", "checkpoint_put"),
        ("PUT", "/bench/t/_delta_log/_last_checkpoint", "", "checkpoint_put"),
        ("GET", "/bench", "list-type=2&prefix=t%2F_delta_log%2F&start-after=t%2F_delta_log%2F0", "log_list"),
        ("GET", "/bench", "list-type=2&prefix=t%2F", "list"),
        ("GET", "/bench/t/_delta_log/00000000000000000013.json", "", "log_get"),
        ("GET", "/bench/t/_delta_log/_last_checkpoint", "", "checkpoint_get"),
        ("GET", "/bench/t/part-00000-1f.snappy.parquet", "", "get_other"),
        ("DELETE", "/bench/t/part-00000-1f.snappy.parquet", "", "delete_other"),
    ],
)
def test_each_request_is_named_by_its_role(method: str, path: str, query: str, kind: str) -> None:
    assert classify(method, path, query) == kind
