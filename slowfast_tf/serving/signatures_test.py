"""SavedModel export: layout, SignatureDefs, variable size, TF1-session parity with Keras."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from slowfast_tf.clip_spec import ClipSpec
from slowfast_tf.data import make_sequence_example
from slowfast_tf.serving import export_lib, signatures, tfserving
from slowfast_tf.testing import local_server
from slowfast_tf.testing.serving_models import LABELS, TINY_CLIP_SPEC

MEAN, STD = 0.45, 0.225
# The frame list is present but holds no frame.
_empty = tf.train.SequenceExample()
_empty.feature_lists.feature_list["image/encoded"].SetInParent()
EMPTY_VIDEO = _empty.SerializeToString()


def jpeg_declaring(height, width, size=16):
    """A real `size` x `size` JPEG whose SOF0 header is patched to claim `height` x `width`.

    A few hundred bytes; `decode_jpeg` would allocate `height * width * 3` bytes for it (measured:
    183 MB and 1 s for 8000 x 8000, "Corrupt JPEG data" is only a warning).
    """
    data = bytearray(tf.io.encode_jpeg(np.full((size, size, 3), 90, np.uint8)).numpy())
    sof = data.index(b"\xff\xc0")  # marker, length (2), precision (1), height (2), width (2)
    data[sof + 5 : sof + 7] = height.to_bytes(2, "big")
    data[sof + 7 : sof + 9] = width.to_bytes(2, "big")
    assert list(tf.image.extract_jpeg_shape(bytes(data)).numpy()) == [height, width, 3]
    return bytes(data)


def video_record(jpegs):
    return make_sequence_example(list(jpegs), [1], fps=30.0).SerializeToString()


HUGE_VIDEO = video_record([jpeg_declaring(8000, 8000)] * 64)  # ~40 kB; ~12 GB if decoded


def reference_inputs(frames, crop):
    """Independent numpy preprocessing for clips that need no resize and no resampling:
    `[B, 8, S, S, 3]` uint8 with S == short_side -> center crop, normalise, slow = frames[0, 7]."""
    s = frames.shape[2]
    y0 = (s - crop + 1) // 2  # ceil((S - crop) / 2), PySlowFast uniform_crop
    x = frames[:, :, y0 : y0 + crop, y0 : y0 + crop].astype(np.float32)
    x = (x / 255.0 - MEAN) / STD
    # linspace(0, 7, 2) -> [0, 7]: first and last frame of the 8-frame fast clip.
    return {"slow": x[:, [0, 7]], "fast": x}


def keras_probabilities(model, inputs):
    return model.build_eval_model()(inputs, training=False)["probabilities"].numpy()


def test_export_layout(serving_export):
    result, config, base = serving_export
    assert result.version == 1 and result.export_dir == os.path.join(base, "tiny_slowfast", "1")
    for rel in ("saved_model.pb", "variables/variables.index", "assets/labels.txt",
                "assets/clip_spec.json", tfserving.WARMUP_FILE, "assets.extra/export_config.json"):
        assert os.path.isfile(os.path.join(result.export_dir, rel)), rel
    with open(os.path.join(result.export_dir, "assets/labels.txt")) as f:
        assert f.read().splitlines() == LABELS
    assert ClipSpec.load(os.path.join(result.export_dir, "assets/clip_spec.json")) == config.clip
    # The staging dir was renamed into place, nothing else is left in the model dir.
    assert os.listdir(os.path.join(base, "tiny_slowfast")) == ["1"]
    assert os.path.isfile(result.models_config) and os.path.isfile(result.batching_parameters)


def test_signature_defs_are_named(session_runner, serving_export):
    config = serving_export[1]
    defs = session_runner.signature_defs
    assert set(defs) == {"serving_default", "serve_examples", "metadata"}
    frames = defs["serving_default"].inputs
    assert list(frames) == ["frames"]
    assert frames["frames"].dtype == tf.uint8.as_datatype_enum
    assert [d.size for d in frames["frames"].tensor_shape.dim] == [-1, -1, -1, -1, 3]
    examples = defs["serve_examples"].inputs
    assert list(examples) == ["examples"] and examples["examples"].dtype == tf.string.as_datatype_enum
    for name, sig in defs.items():
        assert sig.method_name == "tensorflow/serving/predict"
        if name == "metadata":
            assert set(sig.inputs) == {"dummy"} and set(sig.outputs) == {"clip_spec"}
            assert sig.outputs["clip_spec"].dtype == tf.string.as_datatype_enum
            continue
        assert sig.method_name == "tensorflow/serving/predict"
        assert set(sig.outputs) == {"probabilities", "top_k_ids", "top_k_labels"}
        assert sig.outputs["top_k_ids"].dtype == tf.int32.as_datatype_enum
        assert sig.outputs["top_k_labels"].dtype == tf.string.as_datatype_enum
        assert sig.outputs["probabilities"].tensor_shape.dim[1].size == len(LABELS)
        assert sig.outputs["top_k_ids"].tensor_shape.dim[1].size == config.top_k
        assert "keras_tensor" not in str(sig)


def test_variables_stored_once(tiny_model, serving_export):
    export_dir = serving_export[0].export_dir
    ratio = export_lib.variables_size_bytes(export_dir) / export_lib.weight_bytes(tiny_model)
    assert ratio <= 1.05, ratio
    reader = tf.train.load_checkpoint(os.path.join(export_dir, "variables", "variables"))
    saved = [k for k in reader.get_variable_to_shape_map() if k != "_CHECKPOINTABLE_OBJECT_GRAPH"]
    assert len(saved) == len(tiny_model.weights)


def test_keras_export_duplicates_but_ours_does_not(tmp_path):
    """Keras 3 `model.export` saves the Keras Variable wrappers and the raw tf.Variables; we don't."""
    inputs = {"slow": keras.Input((4, None, None, 3), name="slow")}
    x = keras.layers.Conv3D(64, (1, 3, 3), name="conv")(inputs["slow"])
    x = keras.layers.GlobalAveragePooling3D()(x)
    model = keras.Model(inputs, keras.layers.Dense(600, name="fc")(x))  # logits
    weights = export_lib.weight_bytes(model)
    model.export(str(tmp_path / "keras"), verbose=False)
    keras_ratio = export_lib.variables_size_bytes(str(tmp_path / "keras")) / weights
    assert keras_ratio > 1.9
    config = signatures.ServingConfig(ClipSpec(
        num_frames=4, pathways=("slow",), train_crop=8, test_crop=8, train_jitter_scales=(8, 8)
    ))
    labels = [f"class {i}" for i in range(600)]
    signatures.save_serving_model(model, str(tmp_path / "ours"), config, labels)
    ours = export_lib.variables_size_bytes(str(tmp_path / "ours")) / weights
    assert ours <= 1.05, ours
    # Logits-only model: the signature applies the softmax itself.
    loaded = tf.saved_model.load(str(tmp_path / "ours"))
    clip = np.random.default_rng(0).integers(0, 256, (1, 4, 8, 8, 3), dtype=np.uint8)
    out = loaded.signatures["serving_default"](frames=tf.constant(clip))
    expected = tf.nn.softmax(model(reference_single(clip))).numpy()
    np.testing.assert_allclose(out["probabilities"].numpy(), expected, rtol=1e-5, atol=1e-6)


def reference_single(clip):
    x = (clip.astype(np.float32) / 255.0 - MEAN) / STD
    return {"slow": x}


def test_tf1_session_matches_keras(tiny_model, session_runner, serving_export):
    config = serving_export[1]
    frames = np.random.default_rng(1).integers(
        0, 256, (2, config.clip.num_frames, config.clip.short_side, config.clip.short_side, 3), dtype=np.uint8
    )
    out = session_runner.run("serving_default", {"frames": frames})
    expected = keras_probabilities(tiny_model, reference_inputs(frames, config.clip.test_crop))
    np.testing.assert_allclose(out["probabilities"], expected, rtol=1e-4, atol=1e-5)
    assert np.ptp(expected) > 0.05  # a real, non-uniform distribution is being compared
    order = np.argsort(-out["probabilities"], axis=1)[:, : config.top_k]
    np.testing.assert_array_equal(out["top_k_ids"], order)
    labels = np.array([[LABELS[i].encode() for i in row] for row in order], dtype=object)
    np.testing.assert_array_equal(out["top_k_labels"], labels)


def test_any_clip_length_and_frame_size(session_runner, serving_export):
    """T and H, W are free: a 20-frame 90x160 clip is resampled, resized and cropped in-graph."""
    frames = np.random.default_rng(2).integers(0, 256, (1, 20, 90, 160, 3), dtype=np.uint8)
    out = session_runner.run("serving_default", {"frames": frames})
    assert out["probabilities"].shape == (1, len(LABELS))
    np.testing.assert_allclose(out["probabilities"].sum(axis=1), 1.0, rtol=1e-5)
    # Repeating every frame doesn't change a clip resampled to 8 frames of the same content.
    still = np.repeat(frames[:, :1], 20, axis=1)
    short = np.repeat(frames[:, :1], 3, axis=1)
    a = session_runner.run("serving_default", {"frames": still})["probabilities"]
    b = session_runner.run("serving_default", {"frames": short})["probabilities"]
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_serve_examples_matches_keras(tiny_model, session_runner, serving_export):
    config = serving_export[1]
    clips = np.random.default_rng(3).integers(
        0, 256, (2, config.clip.num_frames, config.clip.short_side, config.clip.short_side, 3), dtype=np.uint8
    )
    # fps = target_fps / sampling_rate makes the PySlowFast window exactly these 8 frames.
    fps = config.clip.target_fps / config.clip.sampling_rate
    serialized, decoded = [], []
    for clip in clips:
        jpegs = [tf.io.encode_jpeg(f).numpy() for f in clip]
        decoded.append(np.stack([tf.io.decode_jpeg(j).numpy() for j in jpegs]))
        serialized.append(make_sequence_example(jpegs, [1], fps=fps).SerializeToString())
    out = session_runner.run("serve_examples", {"examples": np.array(serialized, dtype=object)})
    expected = keras_probabilities(
        tiny_model, reference_inputs(np.stack(decoded), config.clip.test_crop)
    )
    np.testing.assert_allclose(out["probabilities"], expected, rtol=1e-4, atol=1e-5)
    assert out["top_k_labels"].shape == (2, config.top_k)


@pytest.mark.parametrize(
    "signature,inputs,match",
    [
        ("serving_default", {"frames": np.zeros((1, 8, 72, 72, 3), np.float32)},
         r"Expects arg\[0\] to be uint8 but float is provided"),
        ("serving_default", {"frames": np.zeros((1, 8, 72, 72, 4), np.uint8)},
         r"\[1,8,72,72,4\] is not compatible with expected shape \[\?,\?,\?,\?,3\]"),
        ("serving_default", {"frames": np.zeros((8, 72, 72, 3), np.uint8)},
         r"is not compatible with expected shape \[\?,\?,\?,\?,3\]"),
        ("serving_default", {"frames": np.zeros((1, 0, 72, 72, 3), np.uint8)},
         "with T, H, W >= 1"),
        ("serving_default", {"clip": np.zeros((1, 8, 72, 72, 3), np.uint8)},
         r"Sent extra: \['clip'\]. Missing but required: \['frames'\]"),
        ("serve_examples", {"examples": np.array([b"not a proto"], dtype=object)}, "(?i)pars"),
        ("serve_examples", {"examples": np.array([tf.train.SequenceExample().SerializeToString()],
                                                 dtype=object)}, "'image/encoded' is required"),
        ("serve_examples", {"examples": np.array([EMPTY_VIDEO], dtype=object)}, "no frames"),
        ("serve_logits", {"frames": np.zeros((1, 8, 72, 72, 3), np.uint8)}, "not found"),
        # The server refuses these first; the graph's own check is test_*_limits below.
        ("serving_default", {"frames": np.zeros((0, 8, 72, 72, 3), np.uint8)},
         r"batch size 0"),
        ("serve_examples", {"examples": np.array([], dtype=object)}, r"batch size 0"),
        ("serve_examples", {"examples": np.array([HUGE_VIDEO], dtype=object)},
         "a JPEG header declares 8000 x 8000 pixels, over max_frame_pixels=16777216"),
        ("serve_examples", {"examples": np.array([video_record([jpeg_declaring(8, 8), b"GIF89a"])],
                                                 dtype=object)},
         r"1 frames of the request are not JPEGs \(first: frame 1 over the batch\)"),
    ],
)
def test_bad_requests_are_rejected(session_runner, signature, inputs, match):
    with pytest.raises(local_server.PredictError, match=match) as info:
        session_runner.run(signature, inputs)
    assert info.value.code == "INVALID_ARGUMENT"


def test_warmup_requests_replay(session_runner, serving_export):
    """Each warm-up record parses as a PredictionLog and runs, as the server does at load time."""
    requests = tfserving.read_warmup_requests(serving_export[0].export_dir)
    names = [r.model_spec.signature_name for r in requests]
    assert names == ["serving_default", "serve_examples", "metadata"]
    for request in requests:
        assert request.model_spec.name == "tiny_slowfast"
        inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
        out = session_runner.run(request.model_spec.signature_name, inputs)
        key = "clip_spec" if request.model_spec.signature_name == "metadata" else "probabilities"
        assert out[key].shape[0] == 1


def test_metadata_signature_returns_the_clip_spec(session_runner, serving_export):
    """What a TF Serving client asks first: the model's clip spec, one JSON copy per row."""
    out = session_runner.run("metadata", {"dummy": np.zeros([2], np.int32)})
    assert out["clip_spec"].shape == (2,)
    assert signatures.clip_spec_from_metadata(out) == serving_export[1].clip == TINY_CLIP_SPEC


def test_serving_config_from_model(tiny_model):
    config = signatures.serving_config_from_model(tiny_model)
    assert config.clip == TINY_CLIP_SPEC  # read from the model (saved in its get_config)
    flagged = signatures.serving_config_from_model(tiny_model, test_crop=48, top_k=None)
    assert (flagged.clip.test_crop, flagged.clip.short_side, flagged.top_k) == (48, 72, 5)
    with pytest.raises(ValueError, match="does not give the model's frames"):
        signatures.serving_config_from_model(tiny_model, num_frames=16)
    with pytest.raises(ValueError, match=r"Unknown serving overrides \['crop_size'\]"):
        signatures.serving_config_from_model(tiny_model, crop_size=64)


def test_serving_config_of_a_model_without_clip_spec():
    """A model saved before clip specs: frames from its inputs, PySlowFast defaults otherwise."""
    from slowfast_tf.testing import serving_models as testing_utils

    model = testing_utils.tiny_classifier(num_frames=8)  # overrides: no clip spec attached
    assert model.clip_spec is None
    config = signatures.serving_config_from_model(model)
    assert config.clip.frames_per_pathway() == {"slow": 2, "fast": 8}
    assert (config.clip.short_side, config.clip.test_crop) == (256, 256)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(clip={"num_frames": 8}), "must be a ClipSpec"),
        (dict(clip=ClipSpec(test_crop=300)), "`test_crop` must not exceed"),
        (dict(clip=ClipSpec(), top_k=0), "top_k"),
    ],
)
def test_serving_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        signatures.ServingConfig(**kwargs)


def test_read_labels(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("a\nb b\n\n")
    assert signatures.read_labels(str(path), 2) == ["a", "b b"]
    assert signatures.read_labels(None, 3) == ["0", "1", "2"]
    with pytest.raises(ValueError, match="one line per class"):
        signatures.read_labels(str(path), 3)


LIMITS = signatures.ServingConfig(
    ClipSpec(num_frames=8, train_crop=16, test_crop=16, train_jitter_scales=(16, 16)),
    max_frame_pixels=32 * 32, max_request_frames=20, max_decoded_bytes=2 * 8 * 16 * 16 * 3,
)


@pytest.mark.parametrize(
    "shape,match",
    [
        ((2, 8, 16, 16, 3), None),  # exactly at max_decoded_bytes
        ((1, 2, 32, 32, 3), None),  # exactly at max_frame_pixels
        ((1, 8, 32, 33, 3), "a frame of 32 x 33 pixels exceeds max_frame_pixels=1024"),
        ((3, 7, 4, 4, 3), r"21 frames \(batch 3 x T 7\) exceed max_request_frames=20"),
        ((2, 8, 16, 17, 3), "13056 bytes exceed max_decoded_bytes=12288"),
        ((0, 8, 16, 16, 3), r"batch size 0"),
        ((1, 8, 0, 16, 3), r"T, H, W >= 1. Received: shape \[1 8 0 16 3\]"),
    ],
)
def test_frames_limits(shape, match):
    frames = tf.zeros(shape, tf.uint8)
    if match is None:
        assert signatures.check_frames_request(frames, LIMITS).shape == shape
        return
    with pytest.raises(tf.errors.InvalidArgumentError, match=match):
        signatures.check_frames_request(frames, LIMITS)


@pytest.mark.parametrize(
    "videos,match",
    [
        # 2 records of 10 frames of 16 x 16: 20 JPEGs, 2 x 8 decoded frames = the byte limit.
        ([[(16, 16)] * 10] * 2, None),
        # A short record decodes at most its N frames: 3 + 8 frames of 16 x 16.
        ([[(16, 16)] * 3, [(16, 16)] * 10], None),
        ([[(16, 16)] * 21], "21 frames in the request exceed max_request_frames=20"),
        ([[(16, 16), (32, 33)]], "declares 32 x 33 pixels, over max_frame_pixels=1024"),
        # A record's largest frame sets its estimate: 8 x 16 x 32 x 3 + 1 x 16 x 16 x 3.
        ([[(16, 16)] * 9 + [(16, 32)], [(16, 16)]], "would take 13056 bytes"),
        ([[(32, 32)] * 8], "would take 24576 bytes, over max_decoded_bytes=12288"),
        ([], "batch size 0"),
    ],
)
def test_examples_limits_read_only_headers(videos, match):
    """Frame sizes come from the headers: every JPEG here is 16 x 16 pixels of real data."""
    examples = tf.constant(
        [video_record([jpeg_declaring(h, w) for h, w in video]) for video in videos], tf.string
    )
    if match is None:
        assert signatures.check_examples_request(examples, LIMITS).shape == [len(videos)]
        return
    with pytest.raises(tf.errors.InvalidArgumentError, match=match):
        signatures.check_examples_request(examples, LIMITS)


def test_limits_are_validated():
    with pytest.raises(ValueError, match="max_decoded_bytes"):
        signatures.ServingConfig(ClipSpec(), max_decoded_bytes=0)


def test_serving_view_is_the_evaluation_test_view(tiny_model, session_runner, serving_export,
                                                   tmp_path):
    """`serving_default` on frames == the model on `build_dataset(mode="test")`'s single view of
    the same frames (both call `spatial_test_view`; here with a real resize 90x120 -> 72x96)."""
    from slowfast_tf.data import DataConfig, build_dataset
    from slowfast_tf.serving import preprocessing

    spec = serving_export[1].clip
    clip = np.random.default_rng(5).integers(0, 256, (spec.num_frames, 90, 120, 3), np.uint8)
    jpegs = [tf.io.encode_jpeg(f).numpy() for f in clip]
    decoded = np.stack([tf.io.decode_jpeg(j).numpy() for j in jpegs])
    path = str(tmp_path / "one.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:  # fps = target_fps / rate: the window is 8 frames
        fps = spec.target_fps / spec.sampling_rate
        writer.write(make_sequence_example(jpegs, [1], fps=fps).SerializeToString())
    config = DataConfig.from_clip_spec(spec, num_clips=1, num_crops=1, num_classes=len(LABELS))
    inputs, _, _ = next(iter(build_dataset(path, config, "test", batch_size=1)))
    served = preprocessing.preprocess_frames(tf.constant(decoded), spec)
    for key in ("slow", "fast"):
        np.testing.assert_allclose(served[key].numpy(), inputs[key][0].numpy(), atol=1e-6)
    out = session_runner.run("serving_default", {"frames": decoded[None]})
    expected = keras_probabilities(tiny_model, inputs)
    np.testing.assert_allclose(out["probabilities"], expected, rtol=1e-4, atol=1e-5)
