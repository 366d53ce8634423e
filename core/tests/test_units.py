"""``core.units.human_bytes``: the one rule for sizes in messages and pages (``static/js/app.js`` mirrors it)."""

import pytest

from core.units import human_bytes


@pytest.mark.parametrize(("size", "text"), [
    (0, "0 bytes"), (1, "1 byte"), (900, "900 bytes"), (1023, "1023 bytes"), (1024, "1 KB"), (1536, "1.5 KB"),
    (20_000, "19.5 KB"), (25 * 1024 * 1024, "25 MB"), (28_800_044, "27.5 MB"), (100 * 1024 ** 3, "100 GB"),
    (3 * 1024 ** 4, "3 TB"), (5000 * 1024 ** 4, "5000 TB"),
])
def test_human_bytes(size, text):
    assert human_bytes(size) == text
