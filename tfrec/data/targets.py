"""`TargetRule`: which behaviours are targets (what is predicted and scored) and which are context.

A shop wants the next purchase, with the clicks before it as context; a film
site may want the next film a user will like. A rule names the target events
(`events`, e.g. `("purchase",)`) and/or a lowest target rating
(`min_rating`); every behaviour stays in the histories, but only targets are
the leave-last-out split's held-out behaviours, the evaluation's targets and
(unless `ModelConfig.context_loss_weight` says otherwise) the training
targets. `exclude` says which earlier items a ranking leaves out: "targets"
(only those the user already had as a target, e.g. bought: an item only
clicked may well be bought next) or "all" (every item met).

The default rule makes every behaviour a target: the behaviour of data
without a rule.

Example:

>>> logs = pd.DataFrame({"event": ["click", "purchase", "click"], "rating": [0.0, 0.0, 0.0]})
>>> TargetRule(events=("purchase",)).mask(logs).tolist()
[False, True, False]
>>> TargetRule().selects_all
True
"""

import dataclasses
from typing import Optional

import numpy as np
import pandas as pd

from tfrec.data import schema

EXCLUSIONS = ("targets", "all")


@dataclasses.dataclass(frozen=True)
class TargetRule:
    """Which behaviours are targets; see the module docstring.

    Attributes:
        events: target event names; () = every event.
        min_rating: lowest target rating; None = any.
        exclude: "targets" or "all": the earlier items a ranking leaves out.
    """

    events: tuple = ()
    min_rating: Optional[float] = None
    exclude: str = "targets"

    def __post_init__(self):
        if self.exclude not in EXCLUSIONS:
            raise ValueError(f"TargetRule.exclude: expected one of {EXCLUSIONS}, got {self.exclude!r}")
        object.__setattr__(self, "events", tuple(str(event) for event in self.events))

    @property
    def selects_all(self) -> bool:
        """Whether every behaviour is a target."""
        return not self.events and self.min_rating is None

    @property
    def excludes_every_seen_item(self) -> bool:
        """Whether a ranking leaves out every earlier item (not only earlier targets)."""
        return self.selects_all or self.exclude == "all"

    def check(self, tables) -> "TargetRule":
        """Raises ValueError naming the value unless `tables` (`InteractionData`) can have these targets.

        Returns:
            self.
        """
        if self.events:
            known = sorted(set(tables.interactions[schema.EVENT])) if tables.has_events else []
            unknown = [event for event in self.events if event not in known]
            if unknown:
                raise ValueError(f"target_events: {unknown} not among the data's events {known or '(no event column)'}")
        if self.min_rating is not None and not tables.has_ratings:
            raise ValueError(f"target_min_rating={self.min_rating}: the data has no ratings")
        if not self.mask(tables.interactions).any():
            raise ValueError(f"no behaviour is a target of {self.describe()}")
        return self

    def mask(self, logs: pd.DataFrame) -> np.ndarray:
        """bool per row of `logs` (interactions with `event`/`rating` columns where the rule needs them)."""
        chosen = np.ones(len(logs), bool)
        if self.events:
            chosen &= logs[schema.EVENT].isin(self.events).to_numpy()
        if self.min_rating is not None:
            chosen &= logs[schema.RATING].to_numpy(np.float64) >= self.min_rating
        return chosen

    def excluded_mask(self, logs: pd.DataFrame) -> np.ndarray:
        """bool per row of `logs`: the behaviours whose items a later ranking leaves out."""
        return np.ones(len(logs), bool) if self.excludes_every_seen_item else self.mask(logs)

    def event_indices(self, vocab) -> list:
        """The target events' indices in `vocab.events` ([] when every event is a target)."""
        return [vocab.events.index(event) for event in self.events]

    def describe(self) -> str:
        """One line for logs and reports, e.g. "events purchase"."""
        parts = ([f"events {','.join(self.events)}"] if self.events else []) + (
            [f"rating >= {self.min_rating:g}"] if self.min_rating is not None else [])
        return " and ".join(parts) or "every behaviour"

    def to_dict(self) -> dict:
        """JSON-ready fields (`from_dict` reads them back)."""
        return {"events": list(self.events), "min_rating": self.min_rating, "exclude": self.exclude}

    @classmethod
    def from_dict(cls, fields: Optional[dict]) -> "TargetRule":
        """The rule `to_dict` wrote; None: the default rule."""
        return cls(**{**(fields or {}), "events": tuple((fields or {}).get("events", ()))})
