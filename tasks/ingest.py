"""Ingest: read raw instruction data in any common format into one canonical Parquet table.

Reads each configured source (JSONL, JSON array, CSV, Parquet; local path or fsspec URL), maps
columns, detects the record shape and writes `<home>/data/ingest-<key>/canonical.parquet` with the
columns of CANONICAL_COLUMNS, plus `rejected.jsonl` for records that could not be read (a bad JSON
line, a wrong-typed field, a CSV row with the wrong number of fields). File-level problems (missing,
empty, not UTF-8, unknown format, no usable column) raise InputError naming the file and line.
"""

from __future__ import annotations

import pandas as pd
from prefect import task

from tunegate.config.data import SourceConfig
from tunegate.core.errors import InputError
from tunegate.core.fingerprint import fingerprint_bytes, fingerprint_file, fingerprint_value
from tunegate.core.refs import write_jsonl, write_table
from tunegate.data.canonical import CANONICAL_COLUMNS, canonicalize_records, read_jsonl_table, source_row_id_prefixes
from tunegate.data.readers import detect_format, gc_paused, open_source_bytes, read_records
from tunegate.data.results import IngestResult, SourceFingerprint
from tunegate.runtime.caching import stage_cache_policy
from tunegate.runtime.retrying import RETRY_DELAYS_SECONDS, retry_unless_input_error
from tunegate.runtime.stages import stage_directory


@task(retries=3, retry_delay_seconds=RETRY_DELAYS_SECONDS, retry_condition_fn=retry_unless_input_error)
def fingerprint_sources(sources: list[SourceConfig]) -> list[SourceFingerprint]:
    """Fingerprint each source's bytes: the cache key of everything downstream."""
    pinned = []
    for source in sources:
        content = open_source_bytes(source.path)
        pinned.append(SourceFingerprint(path=source.path, fingerprint=fingerprint_bytes([content]), bytes=len(content)))
    return pinned


@task(
    cache_policy=stage_cache_policy(),
    retries=3,
    retry_delay_seconds=RETRY_DELAYS_SECONDS,
    retry_condition_fn=retry_unless_input_error,
)
def ingest_sources(sources: list[SourceConfig], pinned: list[SourceFingerprint], home: str) -> IngestResult:
    """Read every source into one canonical table; unreadable records go to rejected.jsonl."""
    out_dir = stage_directory(
        home, "data/ingest", __file__, fingerprint_value([p.model_dump() for p in pinned]), fingerprint_value(sources)
    )
    row_ids = source_row_id_prefixes(sources)
    canonical_parts, rejected, per_source = [], [], {}
    for source, prefix, pin in zip(sources, row_ids, pinned, strict=True):
        content = open_source_bytes(source.path)
        if fingerprint_bytes([content]) != pin.fingerprint:
            # A retry would compare against the same stale fingerprint: this needs a new run.
            raise InputError(f"{source.path}: file changed while the run was reading it; start the run again")
        whole_file = read_jsonl_table(source, content, prefix) if detect_format(source) == "jsonl" else None
        if whole_file is not None:
            canonical_parts.append(whole_file)
            per_source[source.path] = len(whole_file)
            continue
        with gc_paused():
            records = list(read_records(source, content))
            rows, bad = canonicalize_records(records, source, prefix)
        canonical_parts.append(pd.DataFrame(rows, columns=CANONICAL_COLUMNS))
        rejected.extend(bad)
        per_source[source.path] = len(records)
    canonical = pd.concat(canonical_parts, ignore_index=True)
    canonical["source_line"] = canonical["source_line"].astype("int64")
    table = write_table(canonical, out_dir / "canonical.parquet")
    rejected_path = write_jsonl(rejected, out_dir / "rejected.jsonl")
    return IngestResult(
        canonical=table,
        rejected_path=str(rejected_path),
        rejected_fingerprint=fingerprint_file(rejected_path),
        rows_read=sum(per_source.values()),
        rejected=len(rejected),
        per_source=per_source,
    )
