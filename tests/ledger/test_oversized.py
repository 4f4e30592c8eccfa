"""Oversized submissions: read in bounded pieces, rejected as ``too_large``, and recorded with
at most 64 KiB of their bytes plus the whole submission's length and SHA-256."""

import base64
import hashlib
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, cast

import orjson

from events.outcomes import RAW_LIMIT, Oversized, Rejection
from events.reasons import ReasonCode
from okr_ledger.submissions import ndjson_lines
from tests.builders import org_setup, raw
from tests.ledger.support import Cli, ndjson

TEN_MB = 10 * 1024 * 1024


def big_line(fill: bytes, size: int = TEN_MB) -> bytes:
    """A JSON-looking line of ``size`` bytes (a huge comment in an otherwise valid check-in)."""
    head = raw("CheckInRecorded", {"key_result_id": "kr1", "value": 1, "comment": ""})
    body = head[: head.index(b'"comment":"') + len(b'"comment":"')]
    room = size - len(body) - 3
    return body + (fill * (room // len(fill) + 1))[:room] + b'"}}'


class BoundedReads(io.RawIOBase):
    """A stream that refuses to hand out more than ``most`` bytes per call: a reader that
    wanted a whole long line at once fails here."""

    def __init__(self, data: bytes, most: int) -> None:
        self.data, self.most, self.at = data, most, 0

    def readable(self) -> bool:
        return True

    def __iter__(self) -> Iterator[bytes]:
        raise AssertionError("whole lines were asked for")

    def readline(self, size: int | None = -1) -> bytes:
        assert size is not None, "a whole line was asked for"
        assert 0 < size <= self.most, f"asked for {size} bytes at once"
        end = self.data.find(b"\n", self.at, self.at + size)
        stop = min(self.at + size, len(self.data)) if end < 0 else end + 1
        piece, self.at = self.data[self.at : stop], stop
        return piece


def test_the_reader_hands_over_a_long_line_as_its_prefix_length_and_hash() -> None:
    long = b'  {"x":"' + b"yz" * 3_000_000 + b" " * 3_000_000 + b'"} \t'
    data = b'{"a":1}\n' + long + b"\r\n\n   \n[]"
    stream = cast(IO[bytes], BoundedReads(data, most=2 << 20))
    items = list(ndjson_lines(stream, limit=1000))
    whole = long.strip()
    assert items == [
        (b'{"a":1}', 1),
        (Oversized(whole[:RAW_LIMIT], len(whole), hashlib.sha256(whole).hexdigest()), 2),
        (b"[]", 5),
    ]


def test_a_line_just_over_the_limit_and_trailing_white_space_are_measured_exactly() -> None:
    over = hashlib.sha256(b"x" * 1001).hexdigest()
    for spaces in (5000, 3_000_000):  # in one piece, and over several
        padded = b"x" * 1001 + b" \t" * spaces + b"\n"
        assert list(ndjson_lines(io.BytesIO(padded), limit=1000)) == [
            (Oversized(b"x" * 1001, 1001, over), 1)
        ]
        exactly = b" " * spaces + b"x" * 1000 + b" " * spaces + b"\n"
        assert list(ndjson_lines(io.BytesIO(exactly), limit=1000)) == [(b"x" * 1000, 1)]
        blank = b" " * spaces + b"\n{}"
        assert list(ndjson_lines(io.BytesIO(blank), limit=1000)) == [(b"{}", 2)]


def test_the_reader_without_a_limit_gives_whole_lines() -> None:
    long = b"y" * 200_000
    assert list(ndjson_lines(io.BytesIO(long + b"\n"))) == [(long, 1)]


def test_a_rejection_keeps_at_most_64_kib_of_what_was_submitted() -> None:
    submitted = b"q" * (RAW_LIMIT * 3)
    rejection = Rejection(ReasonCode.TOO_LARGE, "too large", submitted, "2026-11-23T12:00:00Z")
    assert rejection.raw == submitted[:RAW_LIMIT]
    assert rejection.raw_length == len(submitted)
    assert rejection.raw_sha256 == hashlib.sha256(submitted).hexdigest()
    document = rejection.to_json()
    assert (document["raw_length"], document["raw_sha256"]) == (
        len(submitted),
        rejection.raw_sha256,
    )
    exact = Rejection(ReasonCode.TOO_LARGE, "too large", submitted[:RAW_LIMIT], "x")
    assert (exact.raw_length, exact.raw_sha256) == (None, None)


def test_ten_megabyte_lines_are_recorded_bounded_and_listed_with_length_and_hash(
    cli: Cli, tmp_path: Path, data_dir: Path
) -> None:
    bigs = [big_line(b"a"), big_line(b"\xff\xfe"), b"x" * TEN_MB]
    lines = [org_setup()[0], *bigs, b"{"]
    source = tmp_path / "in.ndjson"
    with source.open("wb") as out:
        for line in lines:
            out.write(line + b"\n")

    result = cli("submit", str(source), "--json")
    assert result.exit_code == 3, result.output
    summary = orjson.loads(result.stdout)
    assert summary["rejected_by_reason"] == {"too_large": 3, "invalid_json": 1}
    stored = sum(p.stat().st_size for p in data_dir.glob("ledger.db*"))
    assert stored < 2 * 1024 * 1024, f"the ledger takes {stored} bytes for 3 rejections"

    listed = ndjson(cli("rejections", "--json", "--reason", "too_large"))
    assert [r["line"] for r in listed] == [2, 3, 4]
    for document, line in zip(listed, bigs, strict=True):
        assert document["raw_length"] == len(line) == TEN_MB
        assert document["raw_sha256"] == hashlib.sha256(line).hexdigest()
        text = document["raw"]
        kept = text.encode() if text is not None else base64.b64decode(document["raw_base64"])
        assert kept == line[:RAW_LIMIT]

    table = subprocess.run(  # a wide terminal, so that no cell is wrapped
        [str(Path(sys.executable).parent / "okr-ledger"), "rejections"],
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("OKR_")},
            "OKR_DATA_DIR": str(data_dir),
            "COLUMNS": "400",
        },
        capture_output=True,
        text=True,
        check=False,
    )
    assert table.returncode == 0, table.stderr
    for line in bigs:
        shown = f"first {RAW_LIMIT} of {TEN_MB} bytes, sha256 {hashlib.sha256(line).hexdigest()}"
        assert shown in table.stdout
    assert "4 rejections" in table.stdout
