"""MovieLens in its published layouts: 100K, 1M and latest-small.

The layout is detected from the files in the directory:

| layout       | interactions                  | items                         | users      |
|--------------|-------------------------------|-------------------------------|------------|
| 100K         | `u.data` (tab)                | `u.item` (`|`, 19 genre flags named by `u.genre`) | `u.user` |
| 1M           | `ratings.dat` (`::`)          | `movies.dat` (`::`, genres `|`) | `users.dat` |
| latest-small | `ratings.csv`                 | `movies.csv`                  | -          |

`u.item`, `u.user` and the `.dat` files are Latin-1 (a line that is valid
UTF-8 is read as UTF-8: some copies were re-saved so); the CSV files UTF-8.
When `movie_wiki.csv` (`movie_title,wiki_summary`) is present its summaries
become the item descriptions, joined on the exact title. Copies whose
accented letters were lost (replaced by U+FFFD) are joined where exactly one
wiki title matches with each U+FFFD standing for one letter, and take that
title (restoring the accents).

Example:

>>> ds = load_movielens("../shared/data/ml-100k")  # doctest: +SKIP
>>> len(ds.interactions), len(ds.items)  # doctest: +SKIP
(100000, 1682)
"""

import pathlib
import re

import numpy as np
import pandas as pd

from tfrec.data import errors, readers, schema
from tfrec.data.dataset import RawTable, assemble

WIKI_FILE = "movie_wiki.csv"
LAYOUTS = {
    "100k": ("u.data", "u.item", "u.genre"),
    "1m": ("ratings.dat", "movies.dat"),
    "latest": ("ratings.csv", "movies.csv"),
}
_RATINGS = (schema.USER_ID, schema.ITEM_ID, schema.RATING, schema.TIMESTAMP)
_NO_GENRES = "(no genres listed)"


def detect_layout(directory):
    """Returns "100k", "1m" or "latest" from the files present in `directory`."""
    directory = pathlib.Path(directory)
    if not directory.is_dir():
        raise errors.SourceError("MovieLens directory not found", file=directory)
    for layout, files in LAYOUTS.items():
        if all((directory / f).is_file() for f in files):
            return layout
    raise errors.SourceError(
        "no MovieLens layout found: expected "
        + " or ".join(f"{layout} ({', '.join(files)})" for layout, files in LAYOUTS.items()),
        file=directory,
    )


def load_movielens(directory, checker=None, duplicates="error"):
    """Loads a MovieLens directory (100K, 1M or latest-small layout).

    Args:
        directory: the unpacked data set, e.g. `ml-100k/`.
        checker: `errors.RowChecker` applying the bad-row policy.
        duplicates: the repeated-row policy (`errors.DUPLICATES`, see `assemble`).

    Returns:
        `InteractionData`, named `movielens:<directory>`.
    """
    directory = pathlib.Path(directory)
    checker = checker or errors.RowChecker()
    layout = detect_layout(directory)
    if layout == "100k":
        ratings = readers.read_delimited(directory / "u.data", "\t", _RATINGS, checker)
        items = _read_100k_items(directory, checker)
        users = _optional(
            directory / "u.user", "|", (schema.USER_ID, "age", "gender", "occupation", "zip_code"), checker
        )
        rating_range = (1, 5)
    elif layout == "1m":
        ratings = readers.read_delimited(directory / "ratings.dat", "::", _RATINGS, checker, readers.UTF8_OR_LATIN1)
        items = readers.read_delimited(
            directory / "movies.dat", "::", (schema.ITEM_ID, schema.TITLE, schema.GENRES), checker, readers.UTF8_OR_LATIN1
        )
        users = _optional(
            directory / "users.dat", "::", (schema.USER_ID, "gender", "age", "occupation", "zip_code"), checker
        )
        rating_range = (1, 5)
    else:
        ratings = _renamed(
            readers.read_csv(directory / "ratings.csv", checker=checker),
            dict(zip(("userId", "movieId", "rating", "timestamp"), _RATINGS)),
        )
        items = _renamed(
            readers.read_csv(directory / "movies.csv", checker=checker),
            {"movieId": schema.ITEM_ID, "title": schema.TITLE, "genres": schema.GENRES},
        )
        items.frame[schema.GENRES] = items.frame[schema.GENRES].replace(_NO_GENRES, "")
        users = None
        rating_range = (0.5, 5)
    if (directory / WIKI_FILE).is_file():
        _join_descriptions(items, readers.read_csv(directory / WIKI_FILE, checker=checker))
    return assemble(f"movielens:{directory}", ratings, items, users, checker, rating_range=rating_range,
                    duplicates=duplicates)


def _optional(path, separator, names, checker):
    return readers.read_delimited(path, separator, names, checker, readers.UTF8_OR_LATIN1) if path.is_file() else None


def _renamed(raw, columns):
    """Keeps and renames a MovieLens CSV's columns: `columns` maps file name -> canonical name."""
    missing = [c for c in columns if c not in raw.frame.columns]
    if missing:
        raise errors.MissingColumnError(
            f"expected columns {list(columns)}, missing {missing}; the file has {list(raw.frame.columns)}",
            file=raw.file,
        )
    raw.frame = raw.frame[list(columns)].rename(columns=columns)
    return raw


def _read_100k_items(directory, checker):
    genres = readers.read_delimited(directory / "u.genre", "|", ("name", "index"), checker, readers.UTF8_OR_LATIN1)
    # The names are listed in flag order.
    names = genres.frame["name"].tolist()
    flags = [f"flag_{i}" for i in range(len(names))]
    raw = readers.read_delimited(
        directory / "u.item",
        "|",
        (schema.ITEM_ID, schema.TITLE, "release_date", "video_release_date", "url", *flags),
        checker,
        readers.UTF8_OR_LATIN1,
    )
    values = raw.frame[flags].to_numpy(dtype=object)
    bad = ~np.isin(values, ["0", "1"]).all(axis=1)
    keep = checker.check(
        bad,
        errors.FieldTypeError,
        raw.file,
        raw.rows,
        schema.GENRES,
        np.array(["|".join(v) for v in values], dtype=object),
        f"{len(names)} genre flags, each 0 or 1 (genres from u.genre: {', '.join(names)})",
    )
    frame = raw.frame[keep]
    marked = values[keep] == "1"
    frame = pd.DataFrame(
        {
            schema.ITEM_ID: frame[schema.ITEM_ID],
            schema.TITLE: frame[schema.TITLE],
            schema.GENRES: ["|".join(n for n, m in zip(names, row) if m) for row in marked],
        }
    )
    return RawTable(frame, raw.file, raw.rows[keep])


def _join_descriptions(items, wiki):
    """Sets items' `description` from the wiki summaries, joined on the exact title."""
    missing = [c for c in ("movie_title", "wiki_summary") if c not in wiki.frame.columns]
    if missing:
        raise errors.MissingColumnError(
            f"expected columns movie_title, wiki_summary; the file has {list(wiki.frame.columns)}", file=wiki.file
        )
    summaries = wiki.frame.drop_duplicates("movie_title").set_index("movie_title")["wiki_summary"]
    titles = items.frame[schema.TITLE].map(lambda title: _repaired_title(title, summaries.index))
    items.frame[schema.TITLE] = titles
    items.frame[schema.DESCRIPTION] = titles.map(summaries).fillna("")


def _repaired_title(title, known_titles):
    if "\ufffd" not in title:
        return title
    pattern = re.compile("".join("." if c == "\ufffd" else re.escape(c) for c in title))
    matches = [t for t in known_titles if pattern.fullmatch(t)]
    return matches[0] if len(matches) == 1 else title
