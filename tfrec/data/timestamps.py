"""Reading the time column of the interaction table: Unix seconds or milliseconds, ISO 8601, strftime.

A time must be plausible (from the Unix epoch to `FUTURE_YEARS` after the
present); a column in the wrong unit is named as such, with the
`--time_format` that reads it.

Example:

>>> import pandas as pd
>>> from tfrec.data.dataset import RawTable
>>> raw = RawTable(pd.DataFrame({"timestamp": ["2024-01-02", "2024-01-03"]}), "logs.csv")
>>> keep = np.ones(2, dtype=bool)
>>> timestamp_column(raw, errors.RowChecker(), keep, "%Y-%m-%d").tolist()
[1704153600, 1704240000]
"""

import time

import numpy as np
import pandas as pd

from tfrec.data import errors, schema
from tfrec.data.fields import is_empty, numeric_column

TIME_FORMATS_HELP = (
    "'unix' (seconds, the default), 'unix_ms' (milliseconds), 'iso' (ISO 8601) "
    "or a strftime pattern such as '%Y-%m-%d %H:%M:%S' (read as UTC)"
)
# Times are plausible from the Unix epoch to this many years after the present.
FUTURE_YEARS = 5
# 1990-01-01: a Unix time in the wrong unit is named as such when, read in the other unit, it
# falls between this and the latest plausible time.
_RECENT = 631_152_000


def timestamp_column(raw, checker, keep: np.ndarray, time_format: str) -> np.ndarray:
    """The Unix times (seconds, int64) of the `timestamp` column read in `time_format` (see `TIME_FORMATS_HELP`)."""
    field = schema.TIMESTAMP
    series = raw.frame[field]
    values = series.to_numpy(dtype=object)
    if pd.api.types.is_datetime64_any_dtype(series) or time_format not in ("unix", "unix_ms"):
        expected = "a date" if pd.api.types.is_datetime64_any_dtype(series) else f"a time in format {time_format!r}"
        empty = is_empty(values) | series.isna().to_numpy()
        keep &= checker.check(keep & empty, errors.MissingValueError, raw.file, raw.rows, field, values, expected)
        if pd.api.types.is_datetime64_any_dtype(series):
            times = series.dt.tz_localize("UTC") if series.dt.tz is None else series
        else:
            fmt = "ISO8601" if time_format == "iso" else time_format
            times = pd.to_datetime(series.where(~empty, None), format=fmt, utc=True, errors="coerce")
        bad = ~empty & times.isna().to_numpy()
        seconds = ((times - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        expected = "Unix time in " + ("seconds" if time_format == "unix" else "milliseconds")
        values, empty, seconds = numeric_column(raw, field, checker, keep, expected)
        bad = ~empty & ~np.isfinite(seconds)
        if (keep & bad).any():
            expected += _date_hint(values[int(np.flatnonzero(keep & bad)[0])])
        if time_format == "unix_ms":
            _check_not_seconds(raw, values, seconds, keep & ~empty & ~bad)
            seconds = seconds / 1000.0
    keep &= checker.check(keep & bad, errors.TimestampError, raw.file, raw.rows, field, values, expected)
    latest = _latest_time()
    implausible = keep & ~empty & ((seconds < 0) | (seconds > latest))
    if implausible.any():
        expected += (f" between 1970-01-01 and {_date(latest)} (UTC); got {_date(seconds[implausible][0])}"
                     + _time_format_hint(seconds[implausible][0], time_format, latest))
    keep &= checker.check(implausible, errors.TimestampError, raw.file, raw.rows, field, values, expected)
    return np.where(keep, np.floor(np.nan_to_num(seconds)), 0).astype(np.int64)


def _latest_time():
    """The latest plausible Unix time (seconds): `FUTURE_YEARS` after the present."""
    return time.time() + FUTURE_YEARS * 365.25 * 86400


def _date(seconds):
    """The UTC date of a Unix time, also for years pandas cannot represent."""
    days = int(seconds // 86400)
    if -100_000 < days < 100_000:
        return (pd.Timestamp(0) + pd.Timedelta(days=days)).strftime("%Y-%m-%d")
    return f"year {1970 + seconds / (365.2425 * 86400):,.0f}"


def _time_format_hint(seconds, time_format, latest):
    if time_format == "unix" and _RECENT <= seconds / 1000 <= latest:
        return "; the value reads as milliseconds: use --time_format=unix_ms"
    return ""


def _date_hint(value):
    """A hint naming the time format of a value that is not a Unix time but reads as a date."""
    if pd.isna(pd.to_datetime(str(value), format="ISO8601", utc=True, errors="coerce")):
        return ""
    return "; the value reads as an ISO 8601 date: use --time_format=iso"


def _check_not_seconds(raw, values, milliseconds, valid):
    """Refuses a `unix_ms` column whose every value reads as a recent time in seconds."""
    if valid.any() and (milliseconds[valid] >= _RECENT).all() and (
        milliseconds[valid] <= _latest_time()
    ).all():
        first = int(np.flatnonzero(valid)[0])
        raise errors.TimestampError(
            f"got {errors.show(values[first])}, expected Unix time in milliseconds; every value of the column "
            f"falls within January 1970 as milliseconds but reads as a time from {_date(milliseconds[valid].min())} "
            f"to {_date(milliseconds[valid].max())} as seconds: use --time_format=unix",
            file=raw.file, row=int(raw.rows[first]), field=schema.TIMESTAMP)
