import numpy as np
import pytest
import tensorflow as tf

from tfrec.text_encoder import TextEncoder, parse_trainable

TEXTS = ["a movie about space travel", "romantic comedy in paris", "heat (1995)"]


def tiny(trainable="none", **kwargs):
    return TextEncoder("tiny", sequence_length=16, trainable=trainable, **kwargs)


def test_tiny_encoder_embeds_strings_to_unit_vectors():
    encoder = tiny()
    vectors = encoder(tf.constant(TEXTS)).numpy()
    assert vectors.shape == (3, 32)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert not np.allclose(vectors[0], vectors[1])


def test_tokenize_gives_int32_padding_mask():
    tokens = tiny().tokenize(tf.constant(TEXTS))
    assert tokens["padding_mask"].dtype == tf.int32
    assert tokens["token_ids"].shape == (3, 16)
    assert int(tokens["padding_mask"][2].numpy().sum()) < 16  # short text is padded


@pytest.mark.parametrize("spec, trainable_layers", [("none", []), ("top:1", [1]), ("all", [0, 1])])
def test_trainable_freezes_exactly_the_lower_layers(spec, trainable_layers):
    encoder = tiny(spec)
    encoder(tf.constant(TEXTS[:1]))
    names = {v.path for v in encoder.trainable_weights}
    for index in range(2):
        has = any(f"transformer_layer_{index}/" in name for name in names)
        assert has == (index in trainable_layers), (spec, index)
    embeddings_train = any("token_embedding" in name for name in names)
    assert embeddings_train == (spec == "all")
    assert not any("pooled_dense" in name for name in names)


def test_split_forward_equals_full_forward():
    encoder = tiny("top:1")
    tokens = encoder.tokenize(tf.constant(TEXTS))
    hidden = encoder.encode_lower(tokens)
    split = encoder.encode_upper(hidden, tokens["padding_mask"]).numpy()
    np.testing.assert_allclose(split, encoder(tf.constant(TEXTS)).numpy(), atol=1e-5)


def test_cls_pooling_differs_from_mean():
    mean = tiny(seed=3)(tf.constant(TEXTS)).numpy()
    cls = tiny(pooling="cls", seed=3)(tf.constant(TEXTS)).numpy()
    assert not np.allclose(mean, cls)


@pytest.mark.parametrize("bad", ["top:9", "top:x", "some", "top:-1"])
def test_bad_trainable_is_named(bad):
    with pytest.raises(ValueError, match=bad.replace("-", "\\-")):
        parse_trainable(bad, 2)


def test_bad_pooling_and_missing_directory_are_named(tmp_path):
    with pytest.raises(ValueError, match="pooling='max'"):
        TextEncoder("tiny", pooling="max")
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        TextEncoder(str(tmp_path))


def test_get_config_round_trip_reproduces_embeddings():
    encoder = tiny("top:1", seed=1)
    restored = TextEncoder.from_config(encoder.get_config())
    restored(tf.constant(TEXTS[:1]))
    restored.set_weights(encoder.get_weights())
    assert restored.get_config() == encoder.get_config()
    np.testing.assert_allclose(restored(tf.constant(TEXTS)).numpy(),
                               encoder(tf.constant(TEXTS)).numpy(), atol=1e-6)


def test_runs_on_raw_strings_in_a_reloaded_saved_model(tmp_path):
    import keras
    import tensorflow_text  # noqa: F401  (registers the ops the reloaded graph needs)

    encoder = tiny()
    archive = keras.export.ExportArchive()
    archive.track(encoder)
    archive.add_endpoint("embed", encoder.call, input_signature=[tf.TensorSpec([None], tf.string)])
    archive.write_out(str(tmp_path / "encoder"), verbose=False)
    reloaded = tf.saved_model.load(str(tmp_path / "encoder"))
    np.testing.assert_allclose(reloaded.embed(tf.constant(TEXTS)).numpy(),
                               encoder(tf.constant(TEXTS)).numpy(), atol=1e-6)


@pytest.mark.integration
def test_minilm_reproduces_sentence_transformers_similarities():
    encoder = TextEncoder("minilm", sequence_length=32)
    space, scifi, romance = encoder(tf.constant([
        "a movie about space travel", "science fiction film set in outer space",
        "romantic comedy in paris"])).numpy()
    assert abs(float(space @ scifi) - 0.77) < 0.02
    assert abs(float(space @ romance) - 0.31) < 0.02
    titles = encoder(tf.constant(["Star Wars (1977)", "Return of the Jedi (1983)",
                                  "Sense and Sensibility (1995)"])).numpy()
    assert titles[0] @ titles[1] > titles[0] @ titles[2]
