"""A seeded synthetic data set whose item text predicts behaviour.

Every item belongs to one topic; its title, description and genre are drawn
from that topic's vocabulary. Every user starts out preferring one topic and
drifts towards another over their history (plus some noise), picking
popular-within-topic items. The next item's topic is therefore predictable
from the text of the recent history, and a model that reads it beats
popularity, while ratings are high on the user's current topic and low off it.

Example:

>>> ds = generate(users=20, items=40, per_user=10, seed=0)
>>> len(ds.users), len(ds.items)
(20, 40)
"""

import numpy as np
import pandas as pd

from tfrec.data import errors, schema
from tfrec.data.dataset import RawTable, assemble

TOPICS = {
    "space": "orbit rocket planet astronaut galaxy comet station launch nebula moon",
    "cooking": "recipe kitchen chef spice bread oven sauce harvest pasta feast",
    "sports": "league stadium coach goal champion season match training striker trophy",
    "music": "band guitar concert melody album drummer chorus tour rhythm singer",
    "history": "empire king battle castle dynasty revolution ancient treaty siege chronicle",
    "crime": "detective murder heist witness alibi gangster prison clue suspect trial",
    "romance": "love wedding letter heart kiss summer promise dance couple reunion",
    "nature": "forest river wolf mountain ocean island storm glacier desert bird",
    "technology": "robot computer network code startup circuit signal machine hacker data",
    "horror": "ghost haunted curse shadow crypt vampire scream midnight ritual monster",
}
EVENTS = ("view", "click", "purchase")
DEFAULTS = {"users": 200, "items": 300, "per_user": 30, "topics": len(TOPICS), "seed": 0}


def generate(users=200, items=300, per_user=30, topics=len(TOPICS), seed=0, noise=0.15):
    """Generates the data set.

    Args:
        users: number of users.
        items: number of catalogue items.
        per_user: behaviours drawn per user (an item a user already has is
            redrawn a few times, then dropped, so a user may end with fewer).
        topics: number of topics (at most `len(TOPICS)`).
        seed: random seed; the same arguments give the same data.
        noise: probability that a behaviour ignores the user's preference.

    Returns:
        `InteractionData` with ratings, events (view/click/purchase) and user
        features (the user's first topic is not given away: only an age group).
    """
    if not 1 <= topics <= len(TOPICS) or min(users, items, per_user) < 1 or items < topics:
        raise errors.SourceError(
            f"synthetic source needs users, items, per_user >= 1, 1 <= topics <= {len(TOPICS)} and items >= topics; "
            f"got users={users}, items={items}, per_user={per_user}, topics={topics}"
        )
    rng = np.random.default_rng(seed)
    names = list(TOPICS)[:topics]
    vocab = [TOPICS[n].split() for n in names]
    item_topic = np.arange(items) % topics
    topic_size = np.bincount(item_topic, minlength=topics)
    item_ids = np.array([f"i{i:05d}" for i in range(items)], dtype=object)
    user_ids = np.array([f"u{u:05d}" for u in range(users)], dtype=object)

    words = rng.integers(0, len(vocab[0]), size=(items, 5))
    titles = [
        f"The {vocab[k][a].capitalize()} of the {vocab[k][b].capitalize()}" for k, (a, b) in zip(item_topic, words[:, :2])
    ]
    descriptions = [
        f"A story of {vocab[k][a]}, {vocab[k][b]} and {vocab[k][c]}." for k, (a, b, c) in zip(item_topic, words[:, 2:])
    ]
    catalogue = pd.DataFrame(
        {schema.ITEM_ID: item_ids, schema.TITLE: titles, schema.DESCRIPTION: descriptions,
         schema.GENRES: [names[k] for k in item_topic]}
    )

    start, end = rng.integers(0, topics, size=(2, users, 1))
    progress = np.linspace(0.0, 1.0, per_user)[None, :]
    preferred = np.where(rng.random((users, per_user)) < progress, end, start)
    off = rng.random((users, per_user)) < noise
    topic = np.where(off, rng.integers(0, topics, size=(users, per_user)), preferred)
    item = _draw_items(rng, topic, topic_size)
    on_topic = (topic == preferred) & ~off
    rating = np.where(on_topic, 4 + (rng.random(item.shape) < 0.5), 1 + rng.integers(0, 3, size=item.shape))
    gaps = rng.exponential(3600.0, size=(users, per_user)).astype(np.int64) + 1
    first = 1_600_000_000 + rng.integers(0, 30 * 86400, size=(users, 1))
    timestamp = first + np.cumsum(gaps, axis=1)
    event = rng.choice(len(EVENTS), size=item.shape, p=(0.6, 0.3, 0.1))

    logs = pd.DataFrame(
        {
            schema.USER_ID: np.repeat(user_ids, per_user),
            schema.ITEM_ID: item_ids[item.ravel()],
            schema.TIMESTAMP: timestamp.ravel(),
            schema.RATING: rating.ravel().astype(np.float32),
            schema.EVENT: np.array(EVENTS, dtype=object)[event.ravel()],
        }
    ).drop_duplicates([schema.USER_ID, schema.ITEM_ID])
    people = pd.DataFrame({schema.USER_ID: user_ids, "age_group": rng.choice(["18-24", "25-34", "35-49", "50+"], users)})
    name = f"synthetic:users={users},items={items},per_user={per_user},topics={topics},seed={seed}"
    return assemble(
        name, RawTable(logs, name), RawTable(catalogue, name), RawTable(people, name), rating_range=(1, 5)
    )


def _draw_items(rng, topic, topic_size, redraws=10):
    """Draws an item of each behaviour's topic, popular ones (low rank) more often."""
    topics = len(topic_size)
    item = np.zeros(topic.shape, dtype=np.int64)
    todo = np.ones(topic.shape, dtype=bool)
    for _ in range(redraws):
        rank = np.floor(topic_size[topic[todo]] * rng.random(int(todo.sum())) ** 2).astype(np.int64)
        item[todo] = topic[todo] + topics * rank
        user = np.repeat(np.arange(topic.shape[0]), topic.shape[1])
        todo = pd.Series(user * topics * topic_size.max() + item.ravel()).duplicated().to_numpy().reshape(topic.shape)
        if not todo.any():
            break
    return item
