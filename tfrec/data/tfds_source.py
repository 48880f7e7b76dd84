"""MovieLens from tensorflow-datasets (`tfds:movielens/100k` and the other configs).

`tfds:NAME` loads `NAME-ratings` and `NAME-movies` with `tfds.load` (which
downloads on first use, so it needs internet once) and converts them with
`from_tfds`, which works on any `tf.data.Dataset` shaped like tfds' features.

Example:

>>> ds = load_tfds("movielens/100k")  # doctest: +SKIP
"""

import numpy as np
import pandas as pd

from tfrec.data import errors, schema
from tfrec.data.dataset import RawTable, assemble

# tfds' ClassLabel names of `movie_genres`, in label order.
GENRES = (
    "Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary", "Drama", "Fantasy",
    "Film-Noir", "Horror", "IMAX", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "Unknown", "War",
    "Western", "(no genres listed)",
)  # fmt: skip
_RATING_FEATURES = {"user_id": schema.USER_ID, "movie_id": schema.ITEM_ID, "timestamp": schema.TIMESTAMP,
                    "user_rating": schema.RATING}  # fmt: skip
_USER_FEATURES = {"bucketized_user_age": "age_group", "raw_user_age": "age", "user_gender": "gender",
                  "user_occupation_text": "occupation", "user_zip_code": "zip_code"}  # fmt: skip
_NO_GENRES = "(no genres listed)"
_BATCH = 65536


def load_tfds(name, checker=None, data_dir=None, duplicates="error"):
    """Loads `tfds:NAME` (e.g. "movielens/100k", "movielens/1m", "movielens/latest-small").

    Args:
        name: the tfds config prefix; "-ratings" / "-movies" are appended.
        checker: `errors.RowChecker` applying the bad-row policy.
        data_dir: tfds data directory (default: tfds' own).
        duplicates: the repeated-row policy (see `from_tfds`).

    Returns:
        `InteractionData` named `tfds:NAME`.
    """
    import tensorflow_datasets as tfds

    name = name.removesuffix("-ratings").removesuffix("-movies")
    try:
        ratings, info = tfds.load(f"{name}-ratings", split="train", data_dir=data_dir, with_info=True)
        movies = tfds.load(f"{name}-movies", split="train", data_dir=data_dir)
    except Exception as error:  # tfds raises many types (DatasetNotFoundError, network errors...)
        raise errors.SourceError(
            f"cannot load {name}-ratings / {name}-movies with tensorflow-datasets ({type(error).__name__}: "
            f"{str(error)[:200]}); tfds needs internet on first use. Offline, use the source movielens:DIR "
            "on the unpacked MovieLens files",
            file=f"tfds:{name}",
        ) from error
    genres = tuple(info.features["movie_genres"].feature.names)
    return from_tfds(ratings, movies, genres, f"tfds:{name}", checker, duplicates)


def from_tfds(ratings, movies, genre_names=GENRES, name="tfds", checker=None, duplicates="error"):
    """Converts tfds MovieLens datasets to `InteractionData`.

    Args:
        ratings: `tf.data.Dataset` of dicts with at least `user_id`, `movie_id`
            (tf.string), `timestamp` (int64), `user_rating` (float32); user
            features (`user_gender`, `bucketized_user_age`, ...) are kept when present.
        movies: `tf.data.Dataset` of dicts `movie_id`, `movie_title` (tf.string),
            `movie_genres` (int64 [None], indices into `genre_names`).
        genre_names: names of the genre labels.
        name: the data set name.
        checker: `errors.RowChecker` applying the bad-row policy.
        duplicates: the repeated-row policy (`errors.DUPLICATES`, see `assemble`).

    Returns:
        `InteractionData` (rating range 0.5..5).
    """
    user_features = [f for f in _USER_FEATURES if f in ratings.element_spec]
    columns = _columns(ratings.map(lambda x: {k: x[k] for k in [*_RATING_FEATURES, *user_features]}))
    logs = pd.DataFrame({canonical: columns[feature] for feature, canonical in _RATING_FEATURES.items()})
    users = None
    if user_features:
        features = {_USER_FEATURES[f]: columns[f].astype(str) for f in user_features}
        users = pd.DataFrame({schema.USER_ID: columns["user_id"], **features}).drop_duplicates(schema.USER_ID)
    catalogue = []
    for movie in movies.as_numpy_iterator():
        catalogue.append(
            {
                schema.ITEM_ID: _decode(movie["movie_id"]),
                schema.TITLE: _decode(movie["movie_title"]),
                schema.GENRES: [genre_names[g] for g in movie["movie_genres"] if genre_names[g] != _NO_GENRES],
            }
        )
    return assemble(
        name,
        RawTable(logs, f"{name}-ratings"),
        RawTable(pd.DataFrame(catalogue, columns=[schema.ITEM_ID, schema.TITLE, schema.GENRES]), f"{name}-movies"),
        RawTable(users, f"{name}-ratings") if users is not None else None,
        checker,
        rating_range=(0.5, 5),
        duplicates=duplicates,
    )


def _decode(value):
    return value.decode("utf-8", errors="surrogateescape") if isinstance(value, bytes) else value


def _columns(dataset):
    """Concatenates a dataset of flat dicts into numpy columns (bytes decoded to str)."""
    parts = [batch for batch in dataset.batch(_BATCH).as_numpy_iterator()]
    if not parts:
        raise errors.EmptyDataError("the ratings dataset is empty")
    columns = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return {k: np.array([_decode(x) for x in v], dtype=object) if v.dtype == object else v for k, v in columns.items()}
