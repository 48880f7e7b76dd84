"""`ModelConfig`: every hyper-parameter of the tfrec models, one flat dataclass.

Field names double as `tfrec.train` flag names. Every field has a default, and
`validate()` raises `tfrec.config.ConfigError` naming the bad field and value.

Example:

>>> cfg = ModelConfig(task="retrieval", encoder="tiny", embedding_dim=32)
>>> ModelConfig.from_dict(cfg.to_dict()) == cfg
True
"""

import dataclasses
import re
from typing import ClassVar, Optional

import numpy as np

from tfrec.config import Config, require
from tfrec.data import schema

TASKS = ("retrieval", "ranking", "multitask")
HISTORY_ENCODERS = ("transformer", "attention", "mean")
SOFTMAXES = ("full", "in_batch")
RANKING_TARGETS = ("rating", "click")
TRANSITION_PRIORS = ("auto", "off")
REAL_TIME_FROM = 100_000_000
"""Timestamps from here on (Unix seconds: March 1973) are times; smaller ones are positions or counters."""
TRAINABLE = re.compile(r"^(all|none|top:\d+)$")


@dataclasses.dataclass
class ModelConfig(Config):
    """Hyper-parameters of `build_model`.

    Attributes:
        task: "retrieval", "ranking" or "multitask".
        encoder: "minilm", a local Hugging Face BERT directory, a keras-hub
            preset name, or "tiny" (random 2-layer BERT for tests).
        encoder_trainable: "none", "all" or "top:N".
        pooling: "mean" or "cls".
        text_refresh_items: with encoder_trainable "top:N" or "all", how many
            of a training step's target items are re-encoded through the
            trainable encoder layers (the others reuse their last vectors);
            0 re-encodes the whole catalogue every step.
        text_cache: reuse the frozen encoder's item text vectors computed by
            earlier runs with the same encoder and texts, kept on disk in
            $TFREC_CACHE_DIR (default ~/.cache/tfrec); false encodes them again.
        sequence_length: BERT tokens per item text (the longest MovieLens
            text has 119; both shipped retrieval configs read 128).
        embedding_dim: item/query embedding size.
        use_text: represent items by their text through BERT.
        use_item_ids: add a learned item-id embedding to the item representation.
        use_user_ids: add a learned user-id embedding to the query.
        id_dropout: probability of zeroing an item's id embedding during
            training, so that the text path alone gives usable (cold-start)
            embeddings.
        history_encoder: "transformer" (causal self-attention), "attention"
            (attention pooling with the latest item as query) or "mean".
        history_layers: transformer blocks of the behaviour tower.
        history_heads: attention heads of the behaviour tower.
        use_ratings: feed each behaviour's rating to the behaviour tower;
            unset (the default): when the logs have ratings (`for_data`).
        use_time_gaps: feed log-bucketed time gaps (to the previous behaviour
            and to the next/target time) to the behaviour tower; unset (the
            default): when the timestamps are times, not positions.
        behaviour_text: encode the verbalised recent history with BERT instead
            of the behaviour tower ("rated 5: Star Wars (1977); ...").
        behaviour_text_items: how many recent behaviours are verbalised.
        behaviour_text_length: BERT tokens of the verbalised history.
        dropout: dropout rate on embeddings and inside the towers.
        temperature: softmax temperature on cosine scores.
        logq_correction: subtract log sampling probability (in-batch softmax).
        remove_accidental_hits: mask in-batch negatives equal to the positive.
        hard_negatives: keep only this many hardest negatives (0 = all).
        exclude_seen: in training, the items a query's user met earlier in the
            window are no negatives of it, as evaluation excludes them too.
        softmax: "full" (whole catalogue) or "in_batch".
        sequence_training: train SASRec-style, one window per user with a
            next-item loss at every position (see `train_examples`).
        ranking_target: "rating" (MSE) or "click" (binary cross-entropy).
        dcn_layers: `keras_rs.layers.FeatureCross` layers in the ranking head.
        transition_prior: "auto": the item-to-item transition counts of the
            training data join the retrieval score, `q.e + w * log(1 + T)`,
            with `w` chosen on the validation split after training (0 where
            they do not help; `tfrec.models.TransitionPrior`); "off": the
            network alone. Ranking models ignore it.
        context_loss_weight: with target events (`DataConfig.target_events`,
            `target_min_rating`), the loss weight of predicting a context
            behaviour (e.g. a click) against 1 for a target (a purchase); 0
            trains on the targets alone, 1 on every behaviour alike. 0.5 was
            the best on validation on MovieLens' ratings >= 4 and within 2%
            of the best (0) on a shop log's purchases, where 0 lost 5% on
            MovieLens (BENCHMARKS.md, bench_targets).
        retrieval_weight: loss weight of the retrieval task (multitask).
        ranking_weight: loss weight of the ranking task (multitask).
        seed: initialisation seed.
    """

    task: str = "retrieval"
    encoder: str = "minilm"
    encoder_trainable: str = "none"
    pooling: str = "mean"
    text_refresh_items: int = 256
    text_cache: bool = True
    sequence_length: int = 128
    embedding_dim: int = 64
    use_text: bool = True
    use_item_ids: bool = True
    use_user_ids: bool = False
    id_dropout: float = 0.0
    history_encoder: str = "transformer"
    history_layers: int = 2
    history_heads: int = 2
    use_ratings: Optional[bool] = None
    use_time_gaps: Optional[bool] = None
    behaviour_text: bool = False
    behaviour_text_items: int = 10
    behaviour_text_length: int = 128
    dropout: float = 0.2
    temperature: float = 0.1
    logq_correction: bool = False
    remove_accidental_hits: bool = True
    hard_negatives: int = 0
    exclude_seen: bool = False
    softmax: str = "full"
    sequence_training: bool = True
    ranking_target: str = "rating"
    dcn_layers: int = 0
    transition_prior: str = "auto"
    context_loss_weight: float = 0.5
    retrieval_weight: float = 1.0
    ranking_weight: float = 1.0
    seed: int = 0

    CHOICES: ClassVar[dict] = {
        "task": TASKS,
        "history_encoder": HISTORY_ENCODERS,
        "softmax": SOFTMAXES,
        "ranking_target": RANKING_TARGETS,
        "pooling": ("mean", "cls"),
        "transition_prior": TRANSITION_PRIORS,
    }
    SAVED_BEFORE = {"transition_prior": "off"}
    """Fields added after runs were saved without them, and the value such a run was trained with."""
    REMOVED: ClassVar[dict] = {
        "text_adaptor": (("linear",), "the mixture-of-experts text adaptor"),
        "text_experts": (None, "the mixture-of-experts text adaptor"),
    }

    @classmethod
    def from_dict(cls, values):
        """Builds a config from a dict (`Config.from_dict`); a field of `SAVED_BEFORE` a saved config lacks
        takes the value its run was trained with."""
        return super().from_dict({**cls.SAVED_BEFORE, **values})

    def for_data(self, data) -> tuple:
        """(this config with its unset fields derived from `data`, {field: why it was set so}).

        Args:
            data: `tfrec.data.PreparedData` or `StreamedData` (its ratings and training timestamps).

        Example:

        >>> config, reasons = ModelConfig(encoder="tiny").for_data(data)  # doctest: +SKIP
        >>> reasons["use_time_gaps"]  # doctest: +SKIP
        'True: the timestamps are times (median 2004-11-30)'
        """
        changes, reasons = {}, {}
        if self.use_ratings is not None and self.use_time_gaps is not None:
            return self, reasons
        if not hasattr(data, "training_columns"):  # a catalogue alone (e.g. a run directory's): no logs to read
            unset = [name for name in ("use_ratings", "use_time_gaps") if getattr(self, name) is None]
            return self.replace(**dict.fromkeys(unset, False)), dict.fromkeys(unset, "False: built without logs")
        if self.use_ratings is None:
            changes["use_ratings"] = bool(data.has_ratings)
            reasons["use_ratings"] = (f"{changes['use_ratings']}: the logs "
                                      f"{'have' if data.has_ratings else 'have no'} ratings")
        if self.use_time_gaps is None:
            times = np.asarray(data.training_columns([schema.TARGET_TIMESTAMP])[schema.TARGET_TIMESTAMP])
            median = float(np.median(times)) if times.size else 0.0
            changes["use_time_gaps"] = median >= REAL_TIME_FROM
            reasons["use_time_gaps"] = (f"True: the timestamps are times (median {median:.0f} s)"
                                        if changes["use_time_gaps"] else
                                        f"False: the timestamps are positions or counters (median {median:.0f})")
        return self.replace(**changes), reasons

    def validate(self):
        """Raises `ConfigError` naming the first invalid field; returns self."""
        self.check_choices()
        require(self.use_text or self.use_item_ids,
                "ModelConfig: use_text and use_item_ids are both false; items need at least one representation")
        require(not self.behaviour_text or self.use_text, "ModelConfig.behaviour_text=True needs use_text=True")
        require(bool(TRAINABLE.match(self.encoder_trainable)),
                f"{self.name('encoder_trainable')}: expected 'all', 'none' or 'top:N' (N an integer)")
        for name in ("dropout", "id_dropout"):
            self.check_range(name, minimum=0.0, below=1.0)
        for name in ("embedding_dim", "history_heads", "sequence_length",
                     "behaviour_text_items", "behaviour_text_length"):
            self.check_range(name, minimum=1)
        for name in ("history_layers", "hard_negatives", "dcn_layers", "text_refresh_items"):
            self.check_range(name, minimum=0)
        self.check_range("temperature", above=0)
        self.check_range("context_loss_weight", minimum=0.0)
        require(self.embedding_dim % self.history_heads == 0,
                f"ModelConfig.embedding_dim={self.embedding_dim} must be divisible by "
                f"history_heads={self.history_heads}")
        return self
