"""A read reply's items, judged before anything is decoded: a PLC is untrusted."""

from __future__ import annotations

import pytest

pytest.importorskip("snap7")

from agent.sources.s7.poller import items


def item(code: int, data: bytes, transport: int = 0x04) -> bytes:
    bits = len(data) * 8 if transport == 0x04 else len(data)
    return bytes([code, transport]) + bits.to_bytes(2, "big") + data


def test_items_with_their_codes_and_the_fill_byte_after_an_odd_one() -> None:
    raw = item(0xFF, b"\x01\x02\x03") + b"\x00" + item(0x0A, b"") + item(0xFF, b"\x04\x05")
    assert items(raw, 3) == [(0xFF, b"\x01\x02\x03"), (0x0A, b""), (0xFF, b"\x04\x05")]


def test_an_octet_string_counts_its_length_in_bytes() -> None:
    assert items(item(0xFF, b"abc", transport=0x09), 1) == [(0xFF, b"abc")]


@pytest.mark.parametrize(
    ("raw", "count", "says"),
    [
        (item(0xFF, b"\x01\x02"), 2, "the reply holds 1 of 2 items"),
        (item(0xFF, b"\x01\x02")[:-1], 1, "item 0 says 2 bytes; the reply ends first"),
        (b"\xff\x04", 1, "the reply holds 0 of 1 items"),
    ],
)
def test_a_reply_that_does_not_hold_what_it_says_is_not_trusted(
    raw: bytes, count: int, says: str
) -> None:
    with pytest.raises(ValueError, match=says):
        items(raw, count)
