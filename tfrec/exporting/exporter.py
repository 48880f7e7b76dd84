"""`export_model` / `export_run`: a trained tfrec model as a versioned SavedModel for TF Serving.

Writes `EXPORT_BASE/MODEL_NAME/VERSION/` atomically (under a temporary
sibling name, renamed when complete and checked):

- `saved_model.pb`, `variables/`: the signatures of
  `tfrec.exporting.serving_module` (string item ids / raw text in, tokenised
  in the graph with TF Text ops);
- `assets/`: `item_ids.txt` (catalogue ids, line i = index i + 1, read by the
  graph's lookup tables; `item_titles.txt`, `user_ids.txt` and `events.txt` likewise), `items.jsonl` (item_id, text per catalogue item),
  `vocabulary.json` (the training vocabulary), `export_info.json`, `model_card.json` and
  `model_card.md` (`tfrec.exporting.model_card`);
- `assets.extra/tf_serving_warmup_requests`: one PredictRequest per signature;
- `manifest.json`, written last: the size and SHA-256 of every other file
  (`tfrec.version_files`), checked by the server before the version serves.

The export fails when the graph holds an op outside core TensorFlow and TF
Text, or when it is larger than `max_size_ratio` times the weights it
carries (plus the catalogue it adds). `new_items` (`python -m tfrec.export
--update_catalog`) adds new items from their text (item tower, no
retraining) to a retrieval export.

A process loading the export must `import tensorflow_text` first (`load`).

Example:

>>> result = export_run("runs/tiny", "exports", "movies", ExportOptions(catalogue_dtype="int8"))  # doctest: +SKIP
>>> result.path, result.size.ratio  # doctest: +SKIP
('exports/movies/1', 1.01)
"""

import dataclasses
import json
import os
import tempfile
from typing import ClassVar, Optional

import numpy as np
import tensorflow as tf
from absl import logging

from tfrec import disk_space, version_files
from tfrec.config import Config
from tfrec.data import DataConfig
from tfrec.evaluation import verdict
from tfrec.exporting import catalogue as catalogue_lib
from tfrec.exporting import checks, layout, model_card, serving_module, warmup
from tfrec.models import ModelConfig
from tfrec.models.catalogue_retrieval import CATALOGUE_DTYPES
from tfrec.models.request_encoder import UNKNOWN_ITEMS
from tfrec.models.recommender import RETRIEVAL_TASKS
from tfrec.training import run_dir as run_dir_lib

IDS_ASSET = version_files.IDS_ASSET
TITLES_ASSET = version_files.TITLES_ASSET
USERS_ASSET = "user_ids.txt"
EVENTS_ASSET = "events.txt"
ITEMS_ASSET = version_files.ITEMS_ASSET
VOCABULARY_ASSET = run_dir_lib.VOCABULARY
INFO_ASSET = version_files.INFO_ASSET
CARD_ASSET = "model_card.json"
CARD_MARKDOWN_ASSET = "model_card.md"
EMBEDDING_BATCH_SIZE = 128
PROGRESS_EVERY = 100_000  # items between two progress log lines when embedding a catalogue
GRAPH_ALLOWANCE_BYTES = 16 << 20  # saved_model.pb, warm-up requests and model card, beyond weights and catalogue


@dataclasses.dataclass
class ExportOptions(Config):
    """How `export_run` exports a run: the flags of `python -m tfrec.export` but the run, base and model name.

    Attributes:
        version: Version number to write; default: one after the highest existing.
        update_catalog: Item file of new items to embed with the item tower and add to the catalogue (retrieval
            models only): the columns of the run's items file (checked as the table source checks it), or
            item_id,text.
        keep_catalogue: Keep the items of the newest existing version that the run does not know (e.g. an
            earlier --update_catalog's), embedded from their text: each version holds every item of the one
            before.
        top_k_max: Largest k the recommend signatures accept; default: the catalogue size.
        max_size_ratio: Fail when the saved variables (catalogue matrix aside) exceed this multiple of the model
            weight bytes; warn when the whole export (catalogue data aside) does.
        max_graph_mb: Fail when saved_model.pb exceeds this many MB (weights frozen into the graph as constants).
        catalogue_dtype: How the retrieval signatures store the catalogue matrix: float32, bfloat16 (half the
            bytes) or int8 (a quarter, one float32 scale per item); scores are computed in float32 with plain
            TensorFlow ops.
        allow_below_baseline: Publish a model whose validation HR@10 or NDCG@10 is below the best baseline's
            (popularity, transitions, item-kNN on the same validation targets); without it such a model is
            refused.
        unknown_items: What the signatures do with history item ids the catalogue does not know: skip (drop
            them with their context, answer from the rest and report them in the skipped_items output) or error
            (fail the request with INVALID_ARGUMENT naming them).

    Example:

    >>> ExportOptions(catalogue_dtype="int4").validate()
    Traceback (most recent call last):
    tfrec.config.ConfigError: ExportOptions.catalogue_dtype='int4': expected one of ['float32', 'bfloat16', 'int8']
    """

    CHOICES: ClassVar[dict] = {"catalogue_dtype": CATALOGUE_DTYPES, "unknown_items": UNKNOWN_ITEMS}

    version: Optional[int] = None
    update_catalog: Optional[str] = None
    keep_catalogue: bool = True
    top_k_max: Optional[int] = None
    max_size_ratio: float = 1.2
    max_graph_mb: float = 32.0
    catalogue_dtype: str = "float32"
    allow_below_baseline: bool = False
    unknown_items: str = "skip"


class BelowBaselineError(ValueError):
    """A run's validation figures are below a baseline's: publishing it would serve users worse."""


def check_above_baselines(run_dir: str, metrics: dict, allow: bool = False) -> None:
    """Raises `BelowBaselineError` naming the figures when the run's model ranks below a baseline on
    validation (`tfrec.evaluation.verdict.below_baseline`), unless `allow` (then logs them). Runs without
    baseline figures (ranking models, runs written before they were recorded) pass with a warning."""
    if not verdict.best_baselines(metrics):
        logging.warning("%s: metrics.json holds no validation figures of ranking baselines: not compared", run_dir)
        return
    gaps = verdict.below_baseline(metrics)
    if gaps and not allow:
        raise BelowBaselineError(f"refusing to publish {run_dir}: {'; '.join(gaps)}; a simpler method serves "
                                 "these users better (pass --allow_below_baseline to publish it anyway)")
    if gaps:
        logging.warning("publishing %s although %s (--allow_below_baseline)", run_dir, "; ".join(gaps))


@dataclasses.dataclass
class ExportResult:
    """What `export_model` wrote: the version directory, checks and figures."""

    path: str
    version: int
    signatures: list
    num_items: int
    num_new_items: int
    ops: checks.OpReport
    size: checks.SizeReport


def load(export_dir):
    """Loads an export (registering the TF Text ops its graph needs first)."""
    import tensorflow_text  # noqa: F401  (registers the tokenizer ops)

    return tf.saved_model.load(export_dir)


def _batched(fn, values, what):
    """`fn` over `values` in batches, concatenated; logs progress on large catalogues."""
    outputs = []
    for start in range(0, len(values), EMBEDDING_BATCH_SIZE):
        if start and start % PROGRESS_EVERY < EMBEDDING_BATCH_SIZE:
            logging.info("embedded %d of %d %s", start, len(values), what)
        outputs.append(np.asarray(fn(values[start:start + EMBEDDING_BATCH_SIZE]), dtype=np.float32))
    return np.concatenate(outputs, axis=0)


def catalogue_embeddings(model, num_model_items, new_texts=()):
    """Embeddings of every catalogue item: the model's items, then new ones from text.

    Returns:
        float32 [num_model_items + len(new_texts), d].
    """
    # The stored vectors: one gather. New items run the text encoder, in batches.
    embeddings = np.asarray(model.item_embeddings(tf.range(1, num_model_items + 1, dtype=tf.int32)), np.float32)
    if len(new_texts):
        new = _batched(lambda texts: model.text_item_embeddings(tf.constant(texts)), list(new_texts),
                       "new item texts")
        embeddings = np.concatenate([embeddings, new], axis=0)
    return embeddings


def _context(history, vocab):
    """Warmup context of one history row: rating 4, one day apart, request a day after the last,
    the last event type and user of the vocabulary ("" when it has none)."""
    day = 86400
    times = [day * (i + 1) for i in range(len(history))]
    return {
        "history_ratings": np.full([1, len(history)], 4.0, np.float32),
        "history_timestamps": np.array([times], np.int64),
        "history_events": np.array([[vocab.events[-1]] * len(history)], object),
        "timestamp": np.array([day * (len(history) + 1)], np.int64),
        "user_id": np.array([vocab.user_ids[-1]], object),
    }


def _warmup_requests(module, catalogue, vocab, max_k):
    """One request per signature name, on real catalogue ids and texts."""
    history = catalogue.item_ids[1:min(4, catalogue.num_items)]
    text = [catalogue.item_texts[1]]
    inputs = {}
    if module.is_retrieval:
        k = min(10, max_k, catalogue.num_items - len(history))
        inputs[serving_module.RECOMMEND] = {"history": [history], "k": [k]}
        inputs[serving_module.RECOMMEND_FROM_TEXT] = {"text": text, "k": [min(10, max_k)]}
        inputs[serving_module.EMBED_ITEMS] = {"text": text}
        inputs[serving_module.RECOMMEND_IN_CONTEXT] = dict(inputs[serving_module.RECOMMEND], **_context(history, vocab))
    if module.is_ranking:
        inputs[serving_module.SCORE] = {"history": [history[:1]], "candidates": [catalogue.item_ids[1:4]]}
        inputs[serving_module.SCORE_IN_CONTEXT] = dict(inputs[serving_module.SCORE], **_context(history[:1], vocab))
    inputs[serving_module.EXPLAIN] = {"history": [history], "candidates": [catalogue.item_ids[1:3]]}
    inputs[serving_module.EXPLAIN_IN_CONTEXT] = dict(inputs[serving_module.EXPLAIN], **_context(history, vocab))
    default = serving_module.RECOMMEND if module.is_retrieval else serving_module.SCORE
    inputs[serving_module.SERVING_DEFAULT] = inputs[default]
    return sorted(inputs.items())


def export_model(
    model,
    export_base,
    model_name,
    version=None,
    new_items=None,
    top_k_max=None,
    max_size_ratio=1.2,
    max_graph_mb=32.0,
    run_facts=None,
    refresh=None,
    catalogue_dtype="float32",
    unknown_items="skip",
):
    """Exports `model` and its catalogue to `export_base/model_name/VERSION`.

    Args:
        model: a trained `tfrec.models.Recommender` (its vocabulary and item
            texts are the catalogue).
        export_base: directory of exports.
        model_name: model name (directory and TF Serving name).
        version: version to write, default the next free one.
        new_items: optional (ids, texts) or (ids, texts, titles) appended to
            the catalogue, embedded
            from text (retrieval only).
        top_k_max: largest `k` accepted, default the catalogue size.
        max_size_ratio: size limit relative to the weights (`checks.check_size`).
        max_graph_mb: limit on saved_model.pb in MB (`checks.check_size`).
        run_facts: the run directory's metrics and configs for the model card
            (`model_card.build_card`; `export_run` passes them).
        refresh: the before/after figures of a refresh gate, for the model card.
        catalogue_dtype: how the retrieval matrix is stored (`float32`,
            `bfloat16` or `int8`, see `tfrec.models.catalogue_retrieval`).
        unknown_items: "skip" or "error": what the signatures do with
            history item ids the catalogue does not know (`ExportOptions`).

    Returns:
        `ExportResult`.

    Raises:
        checks.ExportCheckError: forbidden op types or an oversized export.
        ValueError, FileExistsError: bad arguments.
        disk_space.StorageError: the export base is not writable or has too
            little free space (checked first), or filled up while writing;
            nothing is left behind.
    """
    vocab = model.vocab
    catalogue = catalogue_lib.Catalogue(vocab.item_ids, model.item_texts, model.item_titles)
    num_model_items = catalogue.num_items
    new_ids, new_texts, *new_titles = new_items or ((), ())
    is_retrieval, is_ranking = model.has_retrieval, model.has_ranking
    if new_ids and is_ranking:
        raise ValueError(
            f"new items need a retrieval model, got task {model.cfg.task!r}: a ranking "
            "head cannot score items it was not trained on"
        )
    if top_k_max is not None and top_k_max < 1:
        raise ValueError(f"top_k_max must be at least 1, got {top_k_max}")
    context = serving_module.context_features(model)
    if context:
        logging.info(
            "the model reads %s: send them through the *_in_context signatures (client: ratings=, "
            "timestamps=, events=, now=, user_ids=); the plain signatures pass 0 for them", context,
        )
    served = catalogue.extended(new_ids, new_texts, *new_titles) if new_ids else catalogue
    max_k = min(top_k_max or served.num_items, served.num_items)
    # Inference methods read the model's stored catalogue vectors: recompute
    # them from the loaded weights.
    model.refresh_catalogue()
    embeddings = catalogue_embeddings(model, num_model_items, new_texts) if is_retrieval else None

    model_dir, what = os.path.join(export_base, model_name), f"export of model {model_name!r}"
    disk_space.require_writable(model_dir, what)
    disk_space.require_free(model_dir, _export_bytes(model, served, embeddings), what)
    with disk_space.storage_errors(model_dir, what), \
            layout.staged_version(export_base, model_name, version) as stage, \
            tempfile.TemporaryDirectory() as scratch:
        ids_file, titles_file = os.path.join(scratch, IDS_ASSET), os.path.join(scratch, TITLES_ASSET)
        served.write_ids(ids_file)
        served.write_titles(titles_file)
        module = serving_module.RecommenderServing(
            model, served, ids_file, num_model_items, titles_file=titles_file,
            catalogue_embeddings=embeddings, max_k=max_k, catalogue_dtype=catalogue_dtype,
            unknown_items=unknown_items,
            users_file=catalogue_lib.write_lines(os.path.join(scratch, USERS_ASSET), vocab.user_ids[1:]),
            events_file=catalogue_lib.write_lines(os.path.join(scratch, EVENTS_ASSET), vocab.events[1:]),
        )
        signatures = module.signatures()
        tf.saved_model.save(module, stage.path, signatures=signatures)

        assets = os.path.join(stage.path, "assets")
        served.write_jsonl(os.path.join(assets, ITEMS_ASSET))
        with open(os.path.join(assets, VOCABULARY_ASSET), "w", encoding="utf-8") as f:
            f.write(vocab.to_json())
        info = {
            "model_name": model_name,
            "version": stage.version,
            "signatures": sorted(signatures),
            "num_items": served.num_items,
            "num_model_items": num_model_items,
            "new_item_ids": list(new_ids),
            "max_k": max_k if is_retrieval else None,
            "unknown_items": unknown_items,
            "max_history_length": module.request_encoder.max_history_length,
            "embedding_dim": None if embeddings is None else int(embeddings.shape[1]),
            "catalogue_dtype": catalogue_dtype if is_retrieval else None,
            "requires": ["tensorflow_text"],
            "context_features": context,
            "model_config": model.cfg.to_dict(),
        }
        with open(os.path.join(assets, INFO_ASSET), "w", encoding="utf-8") as f:
            json.dump(info, f, indent=2)
        card = model_card.build_card(model.cfg.to_dict(), model_name, stage.version, num_model_items, len(new_ids),
                                     run_facts, refresh)
        with open(os.path.join(assets, CARD_ASSET), "w", encoding="utf-8") as f:
            json.dump(card, f, indent=2)
        with open(os.path.join(assets, CARD_MARKDOWN_ASSET), "w", encoding="utf-8") as f:
            f.write(model_card.to_markdown(card))
        warmup.write(stage.path, model_name, _warmup_requests(module, served, vocab, max_k))

        ops = checks.check_ops(stage.path)
        logging.info("op types of %s:\n%s", stage.final_path, ops.summary())
        size = checks.size_report(
            stage.path,
            checks.weights_bytes(model.weights),
            catalogue_matrix_bytes=module.catalogue_bytes,
            catalogue_files=[
                os.path.join("assets", name) for name in os.listdir(assets)
            ] + [warmup.WARMUP_FILE],
        )
        logging.info("size of %s: %s", stage.final_path, size.summary())
        for warning in checks.check_size(size, max_size_ratio, max_graph_mb * 1e6):
            logging.warning("%s", warning)
        version_files.write_manifest(stage.path)
    return ExportResult(
        path=stage.final_path,
        version=stage.version,
        signatures=sorted(signatures),
        num_items=served.num_items,
        num_new_items=len(new_ids),
        ops=ops,
        size=size,
    )


def _export_bytes(model, served, embeddings):
    """About what an export of `model` serving catalogue `served` writes: weights, catalogue matrix, item
    files (ids, titles and texts twice over), the graph; a tenth more for what the estimate misses."""
    text_bytes = sum(len(t.encode("utf-8")) for t in served.item_texts) + sum(len(i) + 2 for i in served.item_ids)
    matrix = 0 if embeddings is None else embeddings.nbytes
    return int(1.1 * (checks.weights_bytes(model.weights) + matrix + 3 * text_bytes + GRAPH_ALLOWANCE_BYTES))


def export_run(run_dir: str, export_base: str, model_name: str, options: ExportOptions = ExportOptions(),
               refresh: Optional[dict] = None) -> ExportResult:
    """Exports the model of a training run directory to `export_base/model_name/VERSION` (see `export_model`).

    The catalogue served is the run's items, then (retrieval models, with
    `options.keep_catalogue`) the items of the newest existing version that
    the run does not know, such as those an earlier `update_catalog` added,
    then the items of `options.update_catalog`: each new version holds every
    item of the one before. The update file is checked before the model loads.

    Args:
        run_dir: directory written by `tfrec.train`.
        options: `ExportOptions` (version, catalogue update, size limits, catalogue dtype).
        refresh: the before/after figures of a refresh gate, for the model card.
    """
    disk_space.require_writable(os.path.join(export_base, model_name), f"export of model {model_name!r}")  # first
    run_files = run_dir_lib.RunDirectory(run_dir)
    metrics = run_files.read_metrics()
    check_above_baselines(run_dir, metrics, options.allow_below_baseline)
    saved = run_files.read_config()
    catalogue = catalogue_lib.Catalogue(run_files.read_vocabulary().item_ids, run_files.read_items()[0])
    retrieval = ModelConfig.from_dict(saved["model_config"]).task in RETRIEVAL_TASKS
    new_ids, new_texts, new_titles = [], [], []
    if options.keep_catalogue and retrieval:
        new_ids, new_texts, new_titles = carried_items(export_base, model_name, catalogue)
    if options.update_catalog:
        ids, texts, titles = catalogue_lib.read_update(options.update_catalog, catalogue.extended(new_ids, new_texts),
                                                       DataConfig.from_dict(saved["data_config"]))
        new_ids, new_texts, new_titles = new_ids + ids, new_texts + texts, new_titles + titles
    run = run_dir_lib.load_run(run_dir)
    new_items = (new_ids, new_texts, new_titles) if new_ids else None
    run_facts = {"run_dir": os.path.abspath(run_dir), "config": saved,
                 "metrics": metrics}
    return export_model(run.model, export_base, model_name, version=options.version, new_items=new_items,
                        top_k_max=options.top_k_max, max_size_ratio=options.max_size_ratio,
                        max_graph_mb=options.max_graph_mb, run_facts=run_facts, refresh=refresh,
                        catalogue_dtype=options.catalogue_dtype, unknown_items=options.unknown_items)


def newest_complete_version(model_dir: str) -> Optional[int]:
    """The newest version of `model_dir` that `version_files.check_version` passes, or None; each newer,
    empty one (e.g. a directory just made) is logged and passed over.

    Raises:
        version_files.IncompleteVersionError: a newer version holds files but fails the check (broken,
            truncated or half-copied): the items it added cannot be read, and carrying an older catalogue
            forward would drop them.
    """
    for version in reversed(layout.existing_versions(model_dir)):
        path = os.path.join(model_dir, str(version))
        try:
            version_files.check_version(path)
        except version_files.IncompleteVersionError as e:
            if any(files for _, _, files in os.walk(path)):
                raise version_files.IncompleteVersionError(
                    f"version {version} is incomplete ({e}): the items it holds cannot be carried forward; "
                    f"repair or remove {path}, or export with --no_keep_catalogue") from None
            logging.warning("passing over version %d: it is empty", version)
            continue
        return version
    return None


def carried_items(export_base, model_name, catalogue):
    """(ids, texts, titles) of the items of the newest complete version of `model_name` that `catalogue`
    lacks, in that version's order (`newest_complete_version`: an empty newer version is passed over
    with a warning, a broken or half-copied one refused, never taken for a catalogue without its items)."""
    model_dir = os.path.join(export_base, model_name)
    version = newest_complete_version(model_dir)
    path = None if version is None else os.path.join(model_dir, str(version), "assets", ITEMS_ASSET)
    if not path or not os.path.exists(path):
        return [], [], []
    known = set(catalogue.item_ids)
    rows = [row for row in zip(*catalogue_lib.read_jsonl(path)) if row[0] not in known]
    if rows:
        logging.info("keeping %d items of version %d the run does not know (embedded from their text)",
                     len(rows), version)
    return [list(column) for column in zip(*rows)] if rows else ([], [], [])
