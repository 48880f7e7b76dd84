"""Warm start: a model for new data that starts from a finished run's weights.

The new data's vocabulary may hold new items and users (and lose some):
each vocabulary-indexed weight is mapped by id, so a known item or user
keeps its learnt row wherever its index moved; a frozen encoder encodes only
the new items' texts (and changed ones). A new item's id embedding
(and rating bias) starts at zero, so it is scored from its text until it
trains; a new user's rows start as a new model's do. Every other weight is
copied. The run's `ModelConfig` is reused: a config that changes the
architecture is refused with the field named. The optimizer state is not
carried over: `Trainer.fit` compiles a fresh one, with a short schedule
(`auto_settings.WARM_START_STEPS`) when the epochs are automatic.

Example:

>>> data = tfrec.data.prepare(tfrec.data.DataConfig(source="table:interactions=new_logs.csv,items=items.csv"))
>>> model = warm_start_model("runs/retrieval", data)               # doctest: +SKIP
>>> Trainer(TrainConfig()).fit(model, data, run_dir="runs/retrieval-2")  # doctest: +SKIP
"""

import contextlib
from typing import Optional

import numpy as np
from absl import logging

from tfrec.config import ConfigError
from tfrec.models import ModelConfig, build_model
from tfrec.training import run_dir as run_files

# ModelConfig fields a warm start may change: how the model trains, not what its weights are.
TRAINING_FIELDS = ("dropout", "id_dropout", "temperature", "logq_correction", "remove_accidental_hits",
                   "hard_negatives", "softmax", "text_refresh_items", "retrieval_weight", "ranking_weight",
                   "seed", "exclude_seen")

# Weights with one row per vocabulary entry, by the end of their path.
_ITEM_ROWS = ("item_log_probability", "trained_items", "text_vectors", "text_bank", "candidate_embeddings",
              "item_id_embedding/embeddings", "item_bias/embeddings")
_USER_ROWS = ("user_embedding/embeddings", "user_bias/embeddings")
_EVENT_ROWS = ("behaviour_tower/event/embeddings",)
# The transition prior's tables hold item indices as values, renumbered rather than copied by row.
_PRIOR_TABLE = ("transition_prior/neighbour_ids", "transition_prior/neighbour_counts")
# New items start with these rows at zero: their text and `Recommender.untrained_id_vector` score
# them until they train.
_ZERO_FOR_NEW = ("item_id_embedding/embeddings", "item_bias/embeddings", "trained_items")


def check_same_architecture(old: ModelConfig, new: ModelConfig, run_dir: str) -> None:
    """Raises `ConfigError` naming the first field outside `TRAINING_FIELDS` that differs."""
    old_fields, new_fields = old.to_dict(), new.to_dict()
    for name in sorted(old_fields):
        if name not in TRAINING_FIELDS and old_fields[name] != new_fields.get(name):
            raise ConfigError(
                f"ModelConfig.{name}={new_fields.get(name)!r}: the run at {run_dir} was trained with "
                f"{old_fields[name]!r}, and a warm start keeps the architecture (only {', '.join(TRAINING_FIELDS)} "
                "may change); train from scratch to change it")


def _vocabulary_kind(path: str) -> Optional[str]:
    for kind, endings in (("item", _ITEM_ROWS), ("user", _USER_ROWS), ("event", _EVENT_ROWS)):
        if path.endswith(endings):
            return kind
    return None


def _row_map(old_ids: list, new_ids: list) -> tuple:
    """(new rows, old rows) of the ids both vocabularies hold (padding row 0 included)."""
    old_index = {item: row for row, item in enumerate(old_ids)}
    pairs = [(row, old_index[item]) for row, item in enumerate(new_ids) if item in old_index]
    new_rows, old_rows = zip(*pairs)
    return np.asarray(new_rows), np.asarray(old_rows)


def _transfer_prior(source, target, item_map) -> None:
    """Copies the transitions `source` (a `TransitionPrior`) holds into `target`, renumbered by
    `item_map` (new rows, old rows): both ends of a transition are item indices."""
    renumbered = np.zeros(source.num_rows, np.int64)
    renumbered[item_map[1]] = item_map[0]
    sources, targets, counts = source.stored_transitions()
    kept = (renumbered[sources] > 0) & (renumbered[targets] > 0)
    target.fit(renumbered[sources[kept]], renumbered[targets[kept]], counts[kept])


def transfer_weights(source, target) -> dict:
    """Copies `source`'s weights into `target`, a model of the same architecture on another vocabulary.

    Args:
        source: a trained `tfrec.models.Recommender`.
        target: a built `Recommender` with the same config (training fields aside).

    Returns:
        counts of the items and users kept and new: {"items_kept", "items_new", "users_kept", "users_new"}.
    """
    vocabularies = {
        "item": (source.vocab.item_ids, target.vocab.item_ids),
        "user": (source.vocab.user_ids, target.vocab.user_ids),
        "event": (source.vocab.events, target.vocab.events),
    }
    maps = {kind: _row_map(old, new) for kind, (old, new) in vocabularies.items()}
    if len(source.weights) != len(target.weights):
        raise ConfigError(f"the run's model has {len(source.weights)} weights, the new one {len(target.weights)}: "
                          "not the same architecture")
    for old, new in zip(source.weights, target.weights):
        path = new.path.removeprefix(f"{target.name}/")
        if old.path.removeprefix(f"{source.name}/") != path:
            raise ConfigError(f"weight {path!r} of the new model is {old.path!r} in the run's model")
        if path.startswith(_PRIOR_TABLE):  # item indices as values: `_transfer_prior`
            continue
        kind = _vocabulary_kind(path)
        old_value = np.asarray(old.numpy())
        if kind is None:
            if old_value.shape != tuple(new.shape):
                raise ConfigError(f"weight {path!r} is {old_value.shape} in the run's model, "
                                  f"{tuple(new.shape)} in the new one")
            new.assign(old_value)
            continue
        value = np.asarray(new.numpy()).copy()
        if path.endswith(_ZERO_FOR_NEW):
            value[:] = 0.0
        new_rows, old_rows = maps[kind]
        value[new_rows] = old_value[old_rows]
        new.assign(value)
    if target.transition_prior is not None:
        _transfer_prior(source.transition_prior, target.transition_prior, maps["item"])
    old_texts = dict(zip(source.vocab.item_ids, source.item_texts))
    tower = target.item_tower
    # A frozen encoder's vectors: new items and changed texts. A trained one's bank: every item, with the
    # weights just copied.
    tower.encode_items([row for row, (item, text) in enumerate(zip(target.vocab.item_ids, target.item_texts))
                        if row and (old_texts.get(item) != text or not tower.frozen_text)])
    if tower.text_encoder is not None:
        tower.text_normalization.finalize_state()  # its copied statistics, not the new catalogue's
    target.refresh_catalogue()
    counts = {}
    for kind in ("item", "user"):
        kept = len(maps[kind][0]) - 1  # the padding row is no item or user
        counts[f"{kind}s_kept"] = kept
        counts[f"{kind}s_new"] = len(vocabularies[kind][1]) - 1 - kept
    return counts


def run_model_config(run_dir: str) -> ModelConfig:
    """The `ModelConfig` of the run at `run_dir` (its `config.json`), e.g. to change a training field of it."""
    return ModelConfig.from_dict(run_files.RunDirectory(run_dir).read_config()["model_config"])


def warm_start_model(run_dir: str, data, model_config: Optional[ModelConfig] = None, strategy=None):
    """Builds a model on `data`'s catalogue starting from the finished run at `run_dir`.

    Args:
        run_dir: a finished run directory (`Trainer.fit(..., run_dir=...)`).
        data: the new `tfrec.data.PreparedData` (its vocabulary may differ from the run's).
        model_config: the config to build, default the run's; it may differ from the run's only in
            `TRAINING_FIELDS`.
        strategy: optional `tf.distribute` strategy whose scope holds the new variables
            (`Trainer.strategy`).

    Returns:
        a built `Recommender` with the run's weights, `warm_started_from` set to `run_dir`.

    Raises:
        ConfigError: the run cannot be read, or `model_config` changes the architecture.
        RunDirError: a file of the run is missing.
    """
    run = run_files.load_run(run_dir)
    config = model_config or run.model_config
    check_same_architecture(run.model_config, config, run_dir)
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        model = build_model(config, data, encode_catalogue=False)  # the run's text vectors are copied
    counts = transfer_weights(run.model, model)
    model.warm_started_from = run_dir
    logging.info("warm start from %s: %d items kept, %d new (from their text); %d users kept, %d new",
                 run_dir, counts["items_kept"], counts["items_new"], counts["users_kept"], counts["users_new"])
    return model
