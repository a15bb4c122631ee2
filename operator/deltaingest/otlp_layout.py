"""The Delta table of OpenTelemetry log records (``source.otlp``): its columns, by name, Delta type and
where each comes from in OTLP's ``LogRecord``. Pure and at the bottom of the package, like ``delta_types``:
the settings generate the table's schema from it and the OTLP decoder fills it.

Attributes are JSON objects in string columns rather than ``map<string,string>``: an OTLP attribute value
is typed (int, double, bool, bytes, arrays and maps of values), and JSON keeps those types where a string
map would flatten them. The attributes a user filters by get columns of their own (``source.otlp.columns``).
"""

from __future__ import annotations

DATE_COLUMN = "date"

LOG_RECORD_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("time", "timestamp", "time_unix_nano (microseconds, UTC); null when 0 (unknown)"),
    ("observed_time", "timestamp", "observed_time_unix_nano; null when 0"),
    (DATE_COLUMN, "date", "UTC date of time, else of observed_time, else of arrival: the partition"),
    ("severity_number", "integer", "severity_number (1-24; 0 is unspecified)"),
    ("severity_text", "string", "severity_text; null when empty"),
    ("body", "string", "body: a string as it is, any other value as JSON; null when unset"),
    ("attributes", "string", "the record's attributes as a JSON object; null when none"),
    ("resource_attributes", "string", "the resource's attributes as a JSON object; null when none"),
    ("scope_name", "string", "the instrumentation scope's name; null when empty"),
    ("scope_version", "string", "the scope's version; null when empty"),
    ("scope_attributes", "string", "the scope's attributes as a JSON object; null when none"),
    ("trace_id", "string", "trace_id as 32 lowercase hex digits; null when absent"),
    ("span_id", "string", "span_id as 16 lowercase hex digits; null when absent"),
    ("flags", "long", "flags (W3C trace flags in the low byte)"),
    ("event_name", "string", "event_name; null when empty"),
    ("dropped_attributes_count", "long", "dropped_attributes_count"),
)
