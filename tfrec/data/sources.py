"""`--source` values and the loader each selects.

| source                                   | reads                                         |
|------------------------------------------|-----------------------------------------------|
| `movielens:DIR`                          | MovieLens 100K / 1M / latest-small files      |
| `tfds:NAME`                              | tensorflow-datasets, e.g. `tfds:movielens/100k` |
| `table:interactions=FILE,items=FILE[,users=FILE]` | your CSV / TSV / Parquet / JSONL tables (`readers.read_table`: a file, compressed or not, a glob or a partitioned folder) |
| `synthetic:users=200,items=300,per_user=30,seed=0` | the seeded generator (`synthetic:` for defaults) |
| `tfrecord:DIR`                           | examples converted by `python -m tfrec.data convert`, streamed (`tfrec.data.prepare` only) |

Example:

>>> ds = load("synthetic:users=10,items=20,per_user=5")
>>> ds.name
'synthetic:users=10,items=20,per_user=5,topics=10,seed=0'
"""

import os

from tfrec.data import errors, movielens, synthetic, table, tfds_source

STREAMED = "tfrecord"
"""The kind of source that holds examples, not tables: `prepare` streams it (`tfrec.data.streamed`)."""
KINDS = ("movielens", "tfds", "table", "synthetic", STREAMED)


def source_kind(source: str) -> str:
    """The KIND of a "KIND:VALUE" source ("" when it has none)."""
    return source.partition(":")[0] if ":" in source else ""


def absolute(source: str) -> str:
    """`source` with its file and folder paths made absolute (from the working directory), so a
    run directory that saves it loads the same data from any directory.

    >>> import os
    >>> absolute("table:interactions=logs.csv,items=/data/items.csv") == (
    ...     f"table:interactions={os.path.abspath('logs.csv')},items=/data/items.csv")
    True
    >>> absolute("synthetic:users=10")
    'synthetic:users=10'
    """
    kind, _, rest = source.partition(":")
    if kind in ("movielens", STREAMED) and rest:
        return f"{kind}:{os.path.abspath(rest)}"
    if kind == "table":
        return "table:" + ",".join(f"{role}={os.path.abspath(path)}"
                                   for role, path in parse_options(rest, source).items())
    return source


def parse_options(text, source):
    """Parses "key=value,key=value" into a dict of str."""
    options = {}
    for part in filter(None, text.split(",")):
        key, sep, value = part.partition("=")
        if not sep or not key or not value:
            raise errors.SourceError(f"expected key=value pairs separated by ',', got {part!r}", file=source)
        options[key.strip()] = value.strip()
    return options


def load(source, on_bad_rows="error", columns=None, delimiter=None, **assemble_options):
    """Loads the data set named by a `--source` value.

    Args:
        source: "movielens:DIR", "tfds:NAME", "table:interactions=F,items=F[,users=F]"
            or "synthetic:[key=value,...]" (keys users, items, per_user, topics, seed).
        on_bad_rows: "error" (raise on the first bad row) or "skip" (skip and
            count bad rows per reason in `ds.skipped`).
        columns: `table.ColumnMap` for table sources.
        delimiter: CSV/TSV delimiter override for table sources.
        **assemble_options: `duplicates` (every source), and `rating_range`,
            `time_format`, `genres_separator` (table sources).

    Returns:
        `InteractionData`.
    """
    if not isinstance(source, str):
        raise errors.SourceError(
            f"expected a source name such as movielens:DIR, got a {type(source).__name__}; "
            "for DataFrames use tfrec.data.from_dataframes(interactions, items)", file="source")
    kind, sep, rest = source.partition(":")
    if not sep or kind not in KINDS:
        raise errors.SourceError(
            f"expected a source KIND:VALUE with KIND one of {', '.join(KINDS)} "
            "(e.g. movielens:/data/ml-100k, synthetic:users=200)",
            file=source,
        )
    if kind == STREAMED:
        raise errors.SourceError(
            "a tfrecord: source holds converted examples, not tables: use it through tfrec.data.prepare "
            "(training, evaluation, export), or load the source it was converted from", file=source)
    checker = errors.RowChecker(on_bad_rows)
    duplicates = assemble_options.get("duplicates", "error")
    if kind == "movielens":
        return movielens.load_movielens(rest, checker, duplicates)
    if kind == "tfds":
        return tfds_source.load_tfds(rest, checker, duplicates=duplicates)
    if kind == "table":
        return table.load_table(parse_options(rest, source), columns, checker, delimiter, **assemble_options)
    options = parse_options(rest, source)
    unknown = sorted(set(options) - set(synthetic.DEFAULTS))
    if unknown:
        raise errors.SourceError(f"unknown synthetic option(s) {unknown}; known: {list(synthetic.DEFAULTS)}", file=source)
    try:
        values = {key: int(value) for key, value in options.items()}
    except ValueError as error:
        raise errors.SourceError(f"synthetic options must be integers ({error})", file=source) from error
    return synthetic.generate(**values)
