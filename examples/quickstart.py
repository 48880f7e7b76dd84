"""tfrec's Python API end to end: DataFrames in, a model, fit, evaluate, recommend, export.

    python examples/quickstart.py                 # tiny random BERT, seconds
    python examples/quickstart.py --encoder=minilm --epochs=10

The behaviour log and catalogue here are generated (users follow one of a few
topics); replace `make_dataframes` with your own DataFrames: a log with
user, item and time columns (rating and event optional) and a catalogue with
the item id and its text.
"""

import argparse
import os
import tempfile

import numpy as np
import pandas as pd
import tensorflow as tf

import tfrec

TOPICS = {
    "space": ["rocket", "planet", "astronaut", "comet", "orbit"],
    "cooking": ["recipe", "kitchen", "pasta", "oven", "spice"],
    "crime": ["detective", "heist", "murder", "police", "alibi"],
}


def make_dataframes(users=60, items_per_topic=40, behaviours=20, seed=0):
    """A log where each user mostly picks items of one topic, and the catalogue with titles and descriptions."""
    rng = np.random.default_rng(seed)
    catalogue = []
    for topic, words in TOPICS.items():
        for i in range(items_per_topic):
            picked = rng.choice(words, 2, replace=False)
            catalogue.append({"item_id": f"{topic}-{i}", "title": f"The {picked[0]} of the {picked[1]}",
                              "description": f"A {topic} story about {' and '.join(picked)}.", "topic": topic})
    items = pd.DataFrame(catalogue)
    log = []
    for user in range(users):
        favourite = list(TOPICS)[user % len(TOPICS)]
        own, other = items[items.topic == favourite].item_id, items[items.topic != favourite].item_id
        for step in range(behaviours):
            pool = own if rng.random() < 0.8 else other
            log.append({"user_id": f"u{user}", "item_id": rng.choice(pool.to_numpy()), "timestamp": 1_000 * user + step})
    return pd.DataFrame(log).drop_duplicates(["user_id", "item_id"]), items.drop(columns="topic")


def main(encoder="tiny", epochs=3, workdir=None):
    """Runs the whole path; returns (test metrics, recommended item ids, served item ids)."""
    workdir = workdir or tempfile.mkdtemp(prefix="tfrec-quickstart-")
    logs, items = make_dataframes()

    # 1. DataFrames in: validated as any table source, split leave-last-out, examples built.
    data = tfrec.data.from_dataframes(logs, items, history_length=20)

    # 2. A two-tower sequential retrieval model: item text through BERT plus item ids.
    model_config = tfrec.models.ModelConfig(task="retrieval", encoder=encoder, sequence_length=32,
                                            embedding_dim=32, history_layers=1)
    model = tfrec.models.build_model(model_config, data)

    # 3. Fit with AdamW, validation after every epoch, early stopping, a resumable run directory.
    trainer = tfrec.Trainer(tfrec.TrainConfig(epochs=epochs, batch_size=32, learning_rate=3e-3, verbose=0))
    result = trainer.fit(model, data, run_dir=os.path.join(workdir, "run"))
    print("test", {name: round(value, 4) for name, value in result.metrics.items() if name.startswith(("HR", "NDCG"))})

    # 4. Evaluate again from the run directory (what `python -m tfrec.evaluate` prints for a file source).
    print("valid", tfrec.training.evaluate_run(result.run_dir, "valid", prepared=data))

    # 5. Recommend from item-id histories.
    history = ["space-1", "space-7", "space-3"]
    item_ids, scores = model.recommend([history], k=5)
    print("recommended after", history, "->", list(item_ids[0]), np.round(scores[0], 3).tolist())

    # 6. Export for TF Serving and ask the export the same question.
    exported = tfrec.exporting.export_model(model, os.path.join(workdir, "exports"), "quickstart")
    served = tfrec.exporting.load(exported.path).signatures["recommend"]
    answer = served(history=tf.constant([history]), k=tf.constant([5]))
    served_ids = [value.decode() for value in answer["item_ids"].numpy()[0]]
    print("served by", exported.path, "->", served_ids)
    return result.metrics, list(item_ids[0]), served_ids


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="tiny", help="tiny (random, for a quick look), minilm, or a BERT directory")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--workdir", default=None, help="where the run and the export go (default: a new temp dir)")
    arguments = parser.parse_args()
    main(arguments.encoder, arguments.epochs, arguments.workdir)
