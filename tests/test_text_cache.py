import os

import numpy as np
import pytest
import tensorflow as tf

from tfrec.models.item_tower import ItemTower
from tfrec.text_cache import TextVectorCache, cache_directory, evict
from tfrec.text_encoder import TextEncoder, progress_message

TEXTS = ["", "star wars. sci-fi", "amelie. comedy in paris", "heat (1995)",
         "a long text about a long film, " * 3, "star wars. sci-fi"]


@pytest.fixture()
def cache_dir(tmp_path, monkeypatch):
    """A cache directory of the test's own, empty."""
    monkeypatch.setenv("TFREC_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("TFREC_TEXT_CACHE", raising=False)
    return cache_directory()


def tower(trainable="none", seed=0, sequence_length=16, **encoder):
    built = ItemTower(TEXTS, embedding_dim=8, seed=seed,
                      encoder={"source": "tiny", "sequence_length": sequence_length, "trainable": trainable,
                               **encoder})
    built.build()
    return built


def shards(directory):
    return sorted(directory.glob("*.tv"))


@pytest.mark.parametrize("trainable", ["none", "top:1"])
def test_second_build_reads_every_text_from_the_cache(cache_dir, trainable):
    first = tower(trainable)
    assert first.text_encoder.encoded_texts == len(set(TEXTS))  # a repeated text is encoded once
    second = tower(trainable)
    assert second.text_encoder.encoded_texts == 0
    np.testing.assert_array_equal(first.catalogue().numpy(), second.catalogue().numpy())


@pytest.mark.parametrize("trainable", ["none", "top:1"])
def test_sorted_trimmed_batches_match_encoding_each_text_whole(cache_dir, trainable):
    built = tower(trainable, sequence_length=32)
    encoder = built.text_encoder
    expected = encoder(tf.constant(TEXTS)).numpy()
    vectors = built._catalogue_text_vectors(tf.range(len(TEXTS)), training=False).numpy()
    np.testing.assert_allclose(vectors, expected, atol=1e-5)


@pytest.mark.parametrize("change", [{"seed": 1}, {"sequence_length": 8}, {"pooling": "cls"}])
def test_another_encoder_misses(cache_dir, change):
    tower()
    other = tower(**change)
    assert other.text_encoder.encoded_texts == len(set(TEXTS))


def test_changed_weights_change_the_fingerprint():
    encoder = TextEncoder("tiny", sequence_length=16)
    before = encoder.fingerprint()
    assert encoder.fingerprint(pooled=False) != before  # another output
    weight = encoder.backbone.transformer_layers[-1].weights[0]
    weight.assign(weight + 1e-3)
    assert encoder.fingerprint() != before


def test_new_texts_alone_are_encoded(cache_dir):
    encoder = TextEncoder("tiny", sequence_length=16)
    first = encoder.cached_vectors(TEXTS[:3])
    both = encoder.cached_vectors(TEXTS[:3] + ["a new film"])
    assert encoder.encoded_texts == 4
    np.testing.assert_array_equal(both[:3], first)


@pytest.mark.parametrize("damage", ["truncate", "flip", "no_footer"])
def test_a_damaged_shard_is_ignored_and_reencoded(cache_dir, damage):
    first = tower()
    (path,) = shards(cache_dir)
    content = path.read_bytes()
    if damage == "truncate":
        content = content[:len(content) // 2]
    elif damage == "flip":
        middle = len(content) // 2
        content = content[:middle] + bytes([content[middle] ^ 1]) + content[middle + 1:]
    else:
        content = content[:-8]
    path.write_bytes(content)
    second = tower()
    assert second.text_encoder.encoded_texts == len(set(TEXTS))
    np.testing.assert_allclose(second.catalogue().numpy(), first.catalogue().numpy(), atol=1e-6)
    assert tower().text_encoder.encoded_texts == 0  # the re-encoded vectors replaced the damaged shard


def test_temporary_files_are_never_read(cache_dir):
    tower()
    (path,) = shards(cache_dir)
    path.rename(cache_dir / f".{path.name}.123.abc.tmp")  # as a run interrupted before its rename leaves it
    assert tower().text_encoder.encoded_texts == len(set(TEXTS))


@pytest.mark.parametrize("off", ["env", "argument"])
def test_the_cache_can_be_turned_off(cache_dir, monkeypatch, off):
    tower()
    if off == "env":
        monkeypatch.setenv("TFREC_TEXT_CACHE", "0")
        again = tower()
    else:
        again = tower(cache=False)
    assert again.text_encoder.encoded_texts == len(set(TEXTS))


def test_eviction_keeps_the_size_bound_and_the_recently_used(tmp_path):
    def store(name, text):
        TextVectorCache(name, directory=tmp_path, max_bytes=10 ** 9).store([text], [np.ones((1, 100), np.float32)])
        return next(tmp_path.glob(f"{name}-*.tv"))

    paths = [store(f"f{number}", "text") for number in range(4)]
    size = paths[0].stat().st_size
    for age, path in enumerate(paths):
        os.utime(path, (1000 + age, 1000 + age))
    assert TextVectorCache("f0", directory=tmp_path).load(["text"])  # a hit marks f0 used now
    evict(tmp_path, 2 * size)
    assert {path.name.split("-")[0] for path in shards(tmp_path)} == {"f0", "f3"}


def test_a_shard_larger_than_the_bound_is_not_stored(tmp_path):
    TextVectorCache("f", directory=tmp_path, max_bytes=100).store(["text"], [np.ones((1, 100), np.float32)])
    assert not shards(tmp_path)


def test_bad_size_bound_is_named(monkeypatch):
    monkeypatch.setenv("TFREC_CACHE_MAX_BYTES", "2GB")
    with pytest.raises(ValueError, match="TFREC_CACHE_MAX_BYTES='2GB'"):
        TextVectorCache("f")


def test_cache_directory_order(monkeypatch):
    monkeypatch.delenv("TFREC_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", "/x")
    assert str(cache_directory()) == "/x/tfrec/text-vectors"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_directory() == cache_directory().home() / ".cache" / "tfrec" / "text-vectors"


def test_progress_message_gives_rate_and_eta():
    assert progress_message(2048, 9742, 134.7, 2048 / 9742) == "encoded 2,048/9,742 texts, 15.2 texts/s, ETA 8 min"
    assert progress_message(10, 20, 2.0, 0.25) == "encoded 10/20 texts, 5.0 texts/s, ETA 6 s"  # long texts left
