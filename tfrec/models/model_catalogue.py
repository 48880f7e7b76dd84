"""The catalogue a `Recommender` answers over, and how it is saved.

The catalogue is the vocabulary (item ids, user ids, event names), the item
texts and the item titles. It is no hyperparameter: `get_config` holds its
sizes only, and `save_assets` writes it beside the weights, as keras-hub
saves a tokenizer's vocabulary, so `model.save("m.keras")` and
`keras.saving.load_model` round-trip a model whatever its catalogue's size.
Setting it gives the towers their texts and the model its `RequestEncoder`.

Example:

>>> model.save("model.keras")  # doctest: +SKIP
>>> keras.saving.load_model("model.keras").recommend([["i1", "i7"]], k=5)  # doctest: +SKIP
"""

import json
import os

from tfrec.data.vocabulary import Vocabulary
from tfrec.models.item_tower import catalogue_size_check
from tfrec.models.request_encoder import RequestEncoder

VOCABULARY_ASSET = "vocabulary.json"
ITEMS_ASSET = "items.json"


class ModelCatalogue:
    """The catalogue side of `Recommender` (a mixin: it reads the model's sizes, towers and `cfg`)."""

    @staticmethod
    def _catalogue_sizes(vocab, num_items, num_users, num_events):
        """(num_items, num_users, num_events) of `vocab`, or as given for a catalogue `load_assets` reads."""
        if vocab is not None:
            return vocab.num_items, vocab.num_users, len(vocab.events)
        if None in (num_items, num_users, num_events):
            raise ValueError("Recommender needs vocab, or num_items, num_users and num_events for a catalogue "
                             f"loaded next; got num_items={num_items}, num_users={num_users}, num_events={num_events}")
        return num_items, num_users, num_events

    def _require_catalogue(self):
        if self.vocab is None:
            raise ValueError("the model has no catalogue yet: build it from a vocab and item texts, or "
                             "load_assets first")

    @property
    def default_event(self) -> int:
        """Event index given to history items without one: the only event type, if there is one."""
        return 1 if self.num_events == 2 else 0

    @property
    def item_ids(self) -> list:
        """Catalogue item ids by index, `[0] == ""`."""
        return self.vocab.item_ids

    def _set_catalogue(self, vocab, item_texts, item_titles=None):
        """Gives the model its catalogue (before `build`): the towers' texts and the request encoder's tables."""
        catalogue_size_check(item_texts, vocab.num_items)
        sizes = (vocab.num_items + 1, vocab.num_users, len(vocab.events))
        if sizes != (self.num_rows, self.num_users, self.num_events):
            raise ValueError(f"the catalogue has {vocab.num_items} items, {vocab.num_users} users and "
                             f"{len(vocab.events)} events (padding included); the model was configured for "
                             f"{self.num_rows - 1}, {self.num_users} and {self.num_events}")
        self.vocab = vocab
        self.item_texts = list(item_texts)
        self.item_titles = list(item_titles) if item_titles is not None else list(item_texts)
        self.item_tower.set_item_texts(self.item_texts)
        if self.cfg.behaviour_text:
            self.behaviour_tower.set_titles(self.item_titles)
        self.request_encoder = RequestEncoder(vocab.item_ids[1:], vocab.user_ids[1:], vocab.events[1:],
                                              default_event=self.default_event, name="request_encoder")

    def get_build_config(self):
        """None: the model builds itself when its catalogue arrives (`load_assets`)."""
        return None

    def save_assets(self, dir_path):
        """Writes the catalogue into `dir_path`: the vocabulary, the item texts and titles."""
        with open(os.path.join(dir_path, VOCABULARY_ASSET), "w", encoding="utf-8") as file:
            file.write(self.vocab.to_json())
        with open(os.path.join(dir_path, ITEMS_ASSET), "w", encoding="utf-8") as file:
            json.dump({"item_texts": self.item_texts, "item_titles": self.item_titles}, file)

    def load_assets(self, dir_path):
        """Reads the catalogue `save_assets` wrote, then builds the model for its weights, loaded next."""
        if self.built:
            raise ValueError("load_assets gives an unbuilt model (Recommender.from_config) its catalogue; "
                             "this model is built")
        with open(os.path.join(dir_path, VOCABULARY_ASSET), encoding="utf-8") as file:
            vocab = Vocabulary.from_json(file.read())
        with open(os.path.join(dir_path, ITEMS_ASSET), encoding="utf-8") as file:
            items = json.load(file)
        self._set_catalogue(vocab, items["item_texts"], items["item_titles"])
        self.build(encode_catalogue=False)
        if getattr(self, "optimizer", None) is not None and not self.optimizer.built:
            self.optimizer.build(self.trainable_variables)  # a compiled model's slots, loaded next
