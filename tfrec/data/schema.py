"""The canonical tables and the feature names every tfrec component shares.

Interactions (one row per behaviour), as a pandas DataFrame:

| column    | dtype   | required | meaning                                  |
|-----------|---------|----------|------------------------------------------|
| user_id   | str     | yes      | who                                      |
| item_id   | str     | yes      | what (must exist in the catalogue)       |
| timestamp | int64   | yes      | when, Unix seconds                       |
| rating    | float32 | no       | explicit rating (e.g. 1..5)              |
| event     | str     | no       | event type, e.g. view / click / purchase |

Item catalogue (one row per item): `item_id` (str, unique) plus text fields
`title`, `description`, `genres` (str; `genres` is "|"-separated tags), and,
when the text is built from chosen columns (`DataConfig.text_cols`), one
`text.<column>` field (str) per chosen column.

Examples (one per target interaction) are dicts of tensors named below. Item
and user ids are mapped to dense indices by `tfrec.data.vocabulary`: index 0
is padding / unknown, real items are 1..num_items. Histories are the user's
previous `history_length` behaviours strictly before the target, most recent
last, left-padded with 0.

Example:

>>> from tfrec.data import schema
>>> schema.HISTORY_ITEM_IDS
'history_item_ids'
"""

# Interaction table columns.
USER_ID = "user_id"
ITEM_ID = "item_id"
TIMESTAMP = "timestamp"
RATING = "rating"
EVENT = "event"

# Catalogue text columns.
TITLE = "title"
DESCRIPTION = "description"
GENRES = "genres"
TEXT_FIELDS = (TITLE, DESCRIPTION, GENRES)
# Prefix of the catalogue columns that hold the item text chosen with
# `DataConfig.text_cols` ("text.brand" for a file column "brand").
TEXT_COLUMN_PREFIX = "text."

# Example feature names (tensors).
USER_INDEX = "user_index"  # int32 []
HISTORY_ITEM_IDS = "history_item_ids"  # int32 [N], 0 = padding
HISTORY_RATINGS = "history_ratings"  # float32 [N], 0 where padding/absent
HISTORY_EVENTS = "history_events"  # int32 [N], event index, 0 = padding
HISTORY_TIMESTAMPS = "history_timestamps"  # int64 [N], 0 where padding
HISTORY_LENGTH = "history_length"  # int32 [], number of real entries
TARGET_ITEM_ID = "target_item_id"  # int32 []
TARGET_RATING = "target_rating"  # float32 [], 0 when absent
TARGET_EVENT = "target_event"  # int32 []
TARGET_TIMESTAMP = "target_timestamp"  # int64 []
LABEL = "label"  # float32 []: the rating, or 1.0 for an implicit positive

PADDING_INDEX = 0
# Event name given to every behaviour of data without an event column.
IMPLICIT_EVENT = "interaction"
