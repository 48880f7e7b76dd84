"""Statistics of a data set and its split, as `python -m tfrec.data describe` prints them.

Example:

>>> from tfrec.data import splits, synthetic
>>> ds = synthetic.generate(users=10, items=100, per_user=5)
>>> stats = describe(ds, splits.split_interactions(ds))
>>> stats["users"], stats["splits"]
(10, {'train': 30, 'valid': 10, 'test': 10})
"""

import numpy as np

from tfrec.data import schema, texts

_QUANTILES = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)


def _distribution(values):
    values = np.asarray(values, dtype=np.float64)
    if not len(values):
        return {}
    stats = {f"p{int(q * 100)}": float(np.quantile(values, q)) for q in _QUANTILES}
    return {"mean": float(values.mean()), **stats}


def describe(ds, split, examples=None):
    """Returns a JSON-able dict of statistics.

    Keys: name, users, items, interactions, density, interactions_per_user
    (distribution), history_length (distribution of example history lengths, when
    `examples` is given), text_coverage (share of items with a description),
    items_with_interactions, ratings, events, skipped, cut_texts (item texts and
    titles cut at `texts.MAX_TEXT_CHARS` / `MAX_TITLE_CHARS`), split, splits
    ({train, valid, test} sizes), cold_items, text_columns ({read, not_read}
    catalogue columns, for tables; see `table.text_columns`).
    """
    logs = ds.interactions
    users = logs[schema.USER_ID].nunique()
    per_user = logs.groupby(schema.USER_ID, sort=False).size().to_numpy()
    stats = {
        "name": ds.name,
        "users": int(users),
        "items": len(ds.items),
        "interactions": len(logs),
        "density": len(logs) / max(1, users * len(ds.items)),
        "items_with_interactions": int(logs[schema.ITEM_ID].nunique()),
        "interactions_per_user": _distribution(per_user),
        "text_coverage": float((ds.items[schema.DESCRIPTION] != "").mean()) if len(ds.items) else 0.0,
        "ratings": _distribution(logs[schema.RATING]) if ds.has_ratings else None,
        "events": logs[schema.EVENT].value_counts().to_dict() if ds.has_events else None,
        "skipped": dict(ds.skipped),
        "cut_texts": texts.cut_counts(ds.items),
        "split": split.name,
        "splits": split.sizes(),
        "cold_items": len(split.cold_items),
        "text_columns": ds.text_columns,
    }
    if examples is not None:
        stats["history_length"] = {
            name: _distribution(ex[schema.HISTORY_LENGTH]) for name, ex in examples.items()
        }
    return stats


def format_text(stats):
    """Renders `describe`'s dict as aligned text lines."""
    lines = [
        f"data set            {stats['name']}",
        f"users               {stats['users']:,}",
        f"items               {stats['items']:,} ({stats['items_with_interactions']:,} with interactions)",
        f"interactions        {stats['interactions']:,}",
        f"density             {stats['density']:.4%}",
        f"per user            {_format_distribution(stats['interactions_per_user'])}",
        f"text coverage       {stats['text_coverage']:.1%} of items have a description",
    ]
    if stats.get("text_columns"):
        lines.append(f"item text           {_format_text_columns(stats['text_columns'])}")
    if stats["ratings"]:
        lines.append(f"ratings             {_format_distribution(stats['ratings'])}")
    if stats["events"]:
        lines.append("events              " + ", ".join(f"{k}: {v:,}" for k, v in stats["events"].items()))
    skipped = stats["skipped"]
    lines.append(
        "skipped rows        " + (", ".join(f"{k}: {v:,}" for k, v in sorted(skipped.items())) if skipped else "none")
    )
    cut = stats.get("cut_texts") or {}
    if any(cut.values()):
        lines.append(f"cut texts           {cut['texts']:,} item texts at {texts.MAX_TEXT_CHARS:,} characters, "
                     f"{cut['titles']:,} titles at {texts.MAX_TITLE_CHARS:,}")
    sizes = stats["splits"]
    lines.append(
        f"split {stats['split']:<13} "
        + ", ".join(f"{name} {sizes[name]:,}" for name in ("train", "valid", "test"))
        + (f" ({stats['cold_items']:,} cold items)" if stats["cold_items"] else "")
    )
    for name, dist in stats.get("history_length", {}).items():
        lines.append(f"history ({name})".ljust(20) + _format_distribution(dist))
    return "\n".join(lines)


def _format_text_columns(columns):
    """ "read: title, genres; other text columns not read: brand (add them with --text_cols)" """
    text = f"read: {', '.join(columns['read']) or 'none'}"
    if columns["not_read"]:
        text += (f"; other text columns not read: {', '.join(columns['not_read'])} (add them with --text_cols, "
                 "e.g. --text_cols=" + ",".join(columns["read"] + columns["not_read"][:1]) + ")")
    return text


def _format_distribution(dist):
    if not dist:
        return "-"
    return f"mean {dist['mean']:.2f}  min {dist['p0']:g}  median {dist['p50']:g}  p90 {dist['p90']:g}  max {dist['p100']:g}"
