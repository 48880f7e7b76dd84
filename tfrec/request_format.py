"""The request format every caller shares: histories as rows of item ids, left-padded.

A request holds one history per row, most recent behaviour last. Rows of
different lengths are padded on the left to one width, with `PADDING_ID`
in place of an item id and a fill value (0, "") in place of the context
aligned with it. The client (`tfrec.client.requests`), the in-process API
(`Recommender.recommend`) and the exported signatures read the same rule;
this module is pure Python so that the client stays light.

Example:

>>> pad([["50", "172"], ["1"]])
[['50', '172'], ['', '1']]
>>> pad([[4.0], []], fill=0.0, width=2)
[[0.0, 4.0], [0.0, 0.0]]

Ids and events are compared in Unicode normal form C, the form `tfrec.data`
stores them in (`nfc`): "café" typed with a combining accent is the
catalogue's "café". The in-process API, the embedded server and the client
normalise what they are given; the exported graphs compare bytes (no op
outside core TensorFlow), so a client of the TF Serving binary that does
not use `tfrec.client` sends NFC itself.
"""

import unicodedata
from typing import Any, Optional, Sequence, Union

# The item id of a padding position (and of no item at all).
PADDING_ID = ""


def padded_width(rows: Sequence[Sequence[Any]]) -> int:
    """The width rows are padded to: the longest row's length, at least 1."""
    return max([1, *(len(row) for row in rows)])


def pad(rows: Sequence[Sequence[Any]], fill: Any = PADDING_ID, width: Optional[int] = None) -> list:
    """`rows` as lists left-padded with `fill` to `width` (default `padded_width(rows)`)."""
    width = padded_width(rows) if width is None else width
    return [[fill] * (width - len(row)) + list(row) for row in rows]


def nfc(text: Union[str, bytes]) -> Union[str, bytes]:
    """`text` (str or UTF-8 bytes, as given) in Unicode normal form C; ASCII comes back as it is.

    >>> nfc("cafe\N{COMBINING ACUTE ACCENT}") == "caf\N{LATIN SMALL LETTER E WITH ACUTE}"
    True
    """
    if text.isascii():
        return text
    if isinstance(text, bytes):
        return unicodedata.normalize("NFC", text.decode("utf-8")).encode("utf-8")
    return unicodedata.normalize("NFC", text)
