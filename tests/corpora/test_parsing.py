"""The parser and preflight on their own (no Django): streaming memory, and the
error each malformed input produces."""
import gzip
import io
import tracemalloc

import pytest

from corpora import parsing
from corpora.preflight import PreflightOptions, run_preflight


def preflight(content: bytes, name: str, tmp_path, **options):
    info = parsing.detect_format(name)
    text = parsing.open_text(io.BytesIO(content), info, max_decompressed_bytes=10**9)
    return run_preflight(text, info, PreflightOptions(**options), str(tmp_path))


@pytest.mark.parametrize("compress", [False, True], ids=["csv", "csv.gz"])
def test_memory_stays_flat_as_the_file_grows(tmp_path, compress):
    """Peak memory is a small fraction of the data: rows stream to disk and only
    17 bytes per row (hash, label id, line, split) stay in memory."""
    row = ("word " * 80).strip()
    lines = "".join(f"{row} {i},label{i % 7}\n" for i in range(25_000))
    content = ("text,label\n" + lines).encode()
    if compress:
        content = gzip.compress(content)
    data_size = len(lines)
    tracemalloc.start()
    try:
        result = preflight(content, "big.csv.gz" if compress else "big.csv", tmp_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.report["rows"]["accepted"] == 25_000
    assert data_size > 10_000_000
    assert peak < data_size / 5, f"peak {peak:,} bytes for {data_size:,} bytes of rows"


def test_filename_checks():
    for bad in ["../x.csv", "a/b.csv", "..", "a\\b.csv", "x\x00.csv", ""]:
        with pytest.raises(parsing.DatasetFileError):
            parsing.check_filename(bad)
    assert parsing.check_filename("ok name.csv") == "ok name.csv"


def test_format_from_extension():
    assert parsing.detect_format("a.TSV.gz").format == "tsv"
    assert parsing.detect_format("a.ndjson").format == "jsonl"
    with pytest.raises(parsing.DatasetFileError) as excinfo:
        parsing.detect_format("a.parquet")
    assert excinfo.value.status == 415


def test_gzip_without_gz_name_is_decompressed_with_a_warning(tmp_path):
    content = gzip.compress(b"text,label\n" + b"".join(b"row %d,%s\n" % (i, b"ab"[i % 2:i % 2 + 1]) for i in range(20)))
    result = preflight(content, "sneaky.csv", tmp_path)
    assert result.report["compressed"] is True
    assert any("gzip" in w for w in result.report["warnings"])


def test_utf16_is_converted(tmp_path):
    content = "text,label\nhello,a\nworld,b\nagain,a\nmore,b\n".encode("utf-16")
    result = preflight(content, "u16.csv", tmp_path, validation_fraction=0.25)
    assert result.report["encoding"] == "utf-16" and result.report["rows"]["accepted"] == 4


def test_carved_split_keeps_duplicates_together(tmp_path):
    content = ("text,label\n" + "".join(f"text {i % 30},{'a' if i % 2 else 'b'}\n" for i in range(300))).encode()
    result = preflight(content, "d.csv", tmp_path, validation_fraction=0.2)
    assert result.report["leakage"]["texts_in_both_splits"] == 0
    assert result.report["duplicates"]["exact_rows"] == 270
    assert 0 < result.validation_count < 300
