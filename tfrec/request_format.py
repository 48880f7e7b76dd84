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
"""

from typing import Any, Optional, Sequence

# The item id of a padding position (and of no item at all).
PADDING_ID = ""


def padded_width(rows: Sequence[Sequence[Any]]) -> int:
    """The width rows are padded to: the longest row's length, at least 1."""
    return max([1, *(len(row) for row in rows)])


def pad(rows: Sequence[Sequence[Any]], fill: Any = PADDING_ID, width: Optional[int] = None) -> list:
    """`rows` as lists left-padded with `fill` to `width` (default `padded_width(rows)`)."""
    width = padded_width(rows) if width is None else width
    return [[fill] * (width - len(row)) + list(row) for row in rows]
