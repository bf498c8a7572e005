"""Stable hashed rows: crc32, row 0 never used, the same in a fresh process."""

import subprocess
import sys
import zlib

from models.hashing import stable_row, stable_rows


def test_rows_are_crc32_and_never_the_padding_row():
    assert stable_row("Drama", 64) == 1 + zlib.crc32(b"Drama") % 63
    rows = stable_rows([f"actor {i}" for i in range(500)], 8)
    assert rows.min() >= 1 and rows.max() <= 7 and len(set(rows.tolist())) == 7


def test_the_same_row_in_another_process():
    code = "from models.hashing import stable_row; print(stable_row('genres:Sci-Fi', 4096))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert int(other) == stable_row("genres:Sci-Fi", 4096)
