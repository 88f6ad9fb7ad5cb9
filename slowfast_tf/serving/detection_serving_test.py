"""An AVA detector behind the local PredictionService (gRPC and REST) and the client's --boxes.

The export is the shared tiny detector of conftest.py (TF1 session loader, as TF Serving).
"""

import json
import re
import urllib.error
import urllib.request

import av
import grpc
import numpy as np
import pytest
from absl import flags
from tensorflow_serving.apis import prediction_service_pb2_grpc

from slowfast_tf.data.ava import ava_pipeline, ava_synthetic
from slowfast_tf.serving import client, detection_signatures, tfserving
from slowfast_tf.testing import local_server
from slowfast_tf.testing.serving_models import DETECTOR_LABELS, DETECTOR_NAME

FRAMES = np.random.default_rng(1).integers(0, 256, (1, 8, 48, 64, 3), dtype=np.uint8)
BOXES = np.array([[0.1, 0.2, 0.5, 0.9], [0.4, 0.0, 1.0, 0.6], [0.0, 0.0, 1.0, 1.0]], np.float32)


@pytest.fixture(scope="module")
def servers(detector_runner):
    models = {DETECTOR_NAME: (1, detector_runner)}
    grpc_server, grpc_port = local_server.serve_grpc(models)
    rest_server, rest_port = local_server.serve_rest(models)
    yield f"127.0.0.1:{grpc_port}", f"127.0.0.1:{rest_port}"
    grpc_server.stop(0)
    rest_server.shutdown()


@pytest.fixture(scope="module")
def keras_probabilities(detector_export):
    """The Keras eval model's per-box probabilities for inputs built by the signature's own
    preprocessing function (eager)."""
    model, _, config = detector_export
    eval_model = model.build_eval_model()

    def run(frames, boxes):
        inputs = detection_signatures.preprocess(frames[0], boxes, config)
        return eval_model(inputs, training=False)["probabilities"].numpy()[0, : len(boxes)]

    return run


def test_grpc_and_rest_predict_equal_the_keras_model(servers, keras_probabilities):
    grpc_addr, rest_addr = servers
    expected = keras_probabilities(FRAMES, BOXES)
    assert np.ptp(expected, axis=0).max() > 0.05  # the boxes get visibly different answers
    by_grpc = client.predict_grpc(FRAMES, grpc_addr, DETECTOR_NAME, boxes=BOXES)
    by_rest = client.predict_rest(FRAMES, rest_addr, DETECTOR_NAME, boxes=BOXES)
    for got in (by_grpc, by_rest):
        assert got["probabilities"].shape == (3, 5) and got["top_k_ids"].shape == (3, 3)
        np.testing.assert_allclose(got["probabilities"], expected, atol=1e-5)
        np.testing.assert_array_equal(got["top_k_ids"], np.argsort(-expected, axis=1)[:, :3])
    labels = [[DETECTOR_LABELS[i] for i in row] for row in by_grpc["top_k_ids"]]
    assert [[b.decode() for b in row] for row in by_grpc["top_k_labels"]] == labels
    assert by_rest["top_k_labels"].tolist() == labels
    # One box alone gets the same answer as in a group (padding slots change nothing).
    alone = client.predict_grpc(FRAMES, grpc_addr, DETECTOR_NAME, boxes=BOXES[1:2])
    np.testing.assert_allclose(alone["probabilities"][0], by_grpc["probabilities"][1], atol=1e-6)


BAD_BOXES = [
    ([[0.1, 0.2, 1.3, 0.9]], "`boxes` must be normalised: every coordinate in [0, 1]"),
    ([[-0.1, 0.2, 0.3, 0.9]], "`boxes` must be normalised: every coordinate in [0, 1]"),
    ([[0.5, 0.2, 0.3, 0.9]], "`boxes` rows must have x2 > x1 and y2 > y1"),
    ([[0.1, 0.6, 0.3, 0.6]], "`boxes` rows must have x2 > x1 and y2 > y1"),  # empty
    ([[0.1, 0.2, 0.3, 0.4]] * 5, "`boxes` holds more than max_boxes=4 rows"),
]


def _grpc_error(addr, inputs):
    with grpc.insecure_channel(addr) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.Predict(tfserving.predict_request(DETECTOR_NAME, inputs), timeout=60)
    return info.value


def _rest_error(addr, inputs):
    body = json.dumps({"inputs": {k: np.asarray(v).tolist() for k, v in inputs.items()}})
    request = urllib.request.Request(f"http://{addr}/v1/models/{DETECTOR_NAME}:predict",
                                     data=body.encode(), method="POST")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=60)
    return info.value.code, json.loads(info.value.read())["error"]


@pytest.mark.parametrize("boxes,message", BAD_BOXES)
def test_bad_boxes_are_invalid_argument_over_grpc_and_400_over_rest(servers, boxes, message):
    """Sent raw (the client would refuse most of them first): the graph's own checks answer."""
    grpc_addr, rest_addr = servers
    inputs = {"frames": FRAMES, "boxes": np.asarray(boxes, np.float32)}
    error = _grpc_error(grpc_addr, inputs)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and message in error.details()
    status, text = _rest_error(rest_addr, inputs)
    assert status == 400 and message in text
    # Through the client: refused before sending (port 1 has no server), except the count,
    # which only the model knows; the server's message then comes back.
    if "max_boxes" in message:
        with pytest.raises(RuntimeError, match="Predict failed: INVALID_ARGUMENT: .*max_boxes=4"):
            client.predict_grpc(FRAMES, grpc_addr, DETECTOR_NAME, boxes=inputs["boxes"])
    else:
        with pytest.raises(ValueError, match=re.escape(message)):
            client.predict_grpc(FRAMES, "127.0.0.1:1", DETECTOR_NAME, boxes=inputs["boxes"])


def test_malformed_box_tensors(servers):
    grpc_addr, rest_addr = servers
    error = _grpc_error(grpc_addr, {"frames": FRAMES, "boxes": np.zeros((0, 4), np.float32)})
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "batch size 0" in error.details()
    error = _grpc_error(grpc_addr, {"frames": FRAMES, "boxes": np.full((1, 3), 0.5, np.float32)})
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not compatible with expected shape [?,4]" in error.details()
    error = _grpc_error(grpc_addr, {"frames": FRAMES, "boxes": BOXES.astype(np.float64)})
    assert re.search(r"Expects arg\[\d\] to be float but double is provided", error.details())
    status, text = _rest_error(rest_addr, {"frames": FRAMES})
    assert status == 400 and "Missing but required: ['boxes']" in text


# ----------------------------------------------------------------------------- client --boxes ---
@pytest.fixture(scope="module")
def ava_video(tmp_path_factory):
    """A 2 s synthetic AVA-like clip (48x64, 30 fps, mpeg4) and its actors' boxes per frame."""
    frames, actors = ava_synthetic.render_video(np.random.default_rng(0), num_frames=60)
    path = str(tmp_path_factory.mktemp("ava_video") / "actors.mp4")
    with av.open(path, "w") as container:
        stream = container.add_stream("mpeg4", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path, actors


def write_csv(tmp_path, text, name="boxes.csv"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_read_boxes_csv_formats(tmp_path):
    plain = client.read_boxes_csv(write_csv(tmp_path, "# people\nx1,y1,x2,y2\n0.1,0.2,0.5,0.9\n\n"
                                            " 0.4 , 0 , 1 , 0.6 \n"))
    assert len(plain) == 1 and plain[0].sec is None
    np.testing.assert_array_equal(plain[0].boxes, BOXES[:2])
    assert plain[0].boxes.dtype == np.float32
    timed = client.read_boxes_csv(write_csv(tmp_path, "1,0.1,0.2,0.5,0.9\n0.5,0,0,1,1\n"
                                            "1,0.4,0,1,0.6\n"))
    assert [k.sec for k in timed] == [1.0, 0.5] and [len(k.boxes) for k in timed] == [2, 1]


@pytest.mark.parametrize("text,match", [
    ("0.1,0.2,0.5\n", r"line 1: expected 4 columns \(x1,y1,x2,y2\) or 5 \(sec,x1,...\), got 3"),
    ("0.1,0.2,0.5,0.9\n1,0.1,0.2,0.5,0.9\n", "line 2: expected 4 columns, got 5"),
    ("sec,x1,y1,x2,y2\n0.1,0.2,0.5,0.9\n", "line 2: expected 5 columns, got 4"),
    ("0.1,0.2,0.5,abc\n", "line 1: every field must be a number"),
    ("0.1,0.2,0.5,nan\n", "line 1: every field must be finite"),
    ("0.1,0.2,1.5,0.9\n", r"line 1: box coordinates must be normalised to \[0, 1\]"),
    ("12,34,56,78\n", r"must be normalised to \[0, 1\]"),  # pixels, not fractions
    ("0.5,0.2,0.1,0.9\n", "line 1: a box needs x2 > x1 and y2 > y1"),
    ("-1,0.1,0.2,0.5,0.9\n", "line 1: sec must be >= 0"),
    ("# nothing\n\n", "no boxes"),
])
def test_read_boxes_csv_errors_are_one_line(tmp_path, text, match):
    with pytest.raises(ValueError, match=match) as info:
        client.read_boxes_csv(write_csv(tmp_path, text))
    assert "\n" not in str(info.value) and "boxes.csv" in str(info.value)


def test_keyframe_clip_indices_follow_the_ava_pipeline():
    # 30 fps: exactly ava_pipeline.clip_indices (centre 30, 8 frames at rate 2 -> 22..36).
    idx = client.keyframe_clip_indices(60, 30.0, 1.0, 8, 2)
    np.testing.assert_array_equal(idx, ava_pipeline.clip_indices(30, 8, 2, 60).numpy())
    np.testing.assert_array_equal(idx, np.arange(22, 38, 2))
    # Clamped at the ends; None centres on the middle frame; 60 fps maps to every other frame.
    np.testing.assert_array_equal(client.keyframe_clip_indices(60, 30.0, 0.0, 4, 2), [0, 0, 0, 2])
    np.testing.assert_array_equal(client.keyframe_clip_indices(61, 30.0, None, 4, 2),
                                  [26, 28, 30, 32])
    np.testing.assert_array_equal(client.keyframe_clip_indices(120, 60.0, 1.0, 4, 2),
                                  [52, 56, 60, 64])
    with pytest.raises(ValueError, match="Keyframe at 3.0 s is past the end of the video"):
        client.keyframe_clip_indices(60, 30.0, 3.0, 8, 2)


def test_detect_over_grpc_and_rest_equals_the_session(tmp_path, ava_video, servers,
                                                      detector_runner):
    path, actors = ava_video
    grpc_addr, rest_addr = servers
    # The actors' true boxes at the keyframes 1.0 s (frame 30) and 0.5 s (frame 15).
    lines = [f"{sec},{','.join(f'{v:.4f}' for v in actor['boxes'][frame])}"
             for sec, frame in ((1.0, 30), (0.5, 15)) for actor in actors]
    csv = write_csv(tmp_path, "sec,x1,y1,x2,y2\n" + "\n".join(lines) + "\n")
    kwargs = dict(model_name=DETECTOR_NAME, num_frames=8, sampling_rate=2, resize_short_side=48)
    by_grpc = client.detect(path, csv, grpc_addr, **kwargs)
    by_rest = client.detect(path, csv, rest_addr, rest=True, **kwargs)
    frames, fps = client.decode_video(path, resize_short_side=48)
    assert frames.shape == (60, 48, 64, 3) and fps == 30.0
    assert [k.sec for k, _ in by_grpc] == [1.0, 0.5]
    for (keyframe, got), (_, got_rest) in zip(by_grpc, by_rest):
        clip = frames[client.keyframe_clip_indices(60, fps, keyframe.sec, 8, 2)][None]
        expected = detector_runner.run("serving_default", {"frames": clip, "boxes": keyframe.boxes})
        assert got["probabilities"].shape == (len(actors), 5)
        np.testing.assert_allclose(got["probabilities"], expected["probabilities"], atol=1e-6)
        np.testing.assert_allclose(got_rest["probabilities"], expected["probabilities"], atol=1e-6)
        np.testing.assert_array_equal(got["top_k_ids"], expected["top_k_ids"])
    text = client.format_detections(by_grpc)
    assert text.splitlines()[0] == f"keyframe 1 s: {len(actors)} box(es)"
    assert text.splitlines()[2].startswith("    1. ") and text.count("  box ") == 2 * len(actors)


def run_main(capsys, *argv):
    flag_values = flags.FlagValues()
    client.define_flags(flag_values)
    flag_values(["client", *argv])
    code = client.main([], flag_values=flag_values)
    return code, capsys.readouterr()


def test_command_line_boxes(tmp_path, ava_video, servers, capsys):
    """`python -m slowfast_tf.serving.client --video x.mp4 --boxes boxes.csv` (main, in-process)."""
    path, _ = ava_video
    grpc_addr, rest_addr = servers
    common = [f"--video={path}", f"--model_name={DETECTOR_NAME}", "--num_frames=8",
              "--resize_short_side=48"]
    csv = write_csv(tmp_path, "0.1,0.2,0.5,0.9\n0.4,0.0,1.0,0.6\n")
    code, out = run_main(capsys, *common, f"--boxes={csv}", f"--server={rest_addr}", "--rest")
    assert code == 0, out.err
    lines = out.out.splitlines()
    assert "REST" in lines[0] and "detection" in lines[0]
    assert lines[1] == "keyframe middle frame: 2 box(es)"
    assert lines[2] == "  box 1 [0.100, 0.200, 0.500, 0.900]"
    assert len(lines) == 1 + 1 + 2 * (1 + 3) and lines[3].startswith("    1. ")
    assert any(label in lines[3] for label in DETECTOR_LABELS)
    # A malformed CSV: one error line, exit 1, nothing sent.
    bad = write_csv(tmp_path, "0.1,0.2,0.5\n", "bad.csv")
    code, out = run_main(capsys, *common, f"--boxes={bad}", "--server=127.0.0.1:1")
    assert code == 1 and out.out == ""
    assert out.err.count("\n") == 1 and out.err.startswith(f"error: {bad} line 1: expected 4")
    # The server's refusal (5 boxes > max_boxes 4): one line carrying its message.
    many = write_csv(tmp_path, "0.1,0.2,0.5,0.9\n" * 5, "many.csv")
    code, out = run_main(capsys, *common, f"--boxes={many}", f"--server={grpc_addr}")
    assert code == 1 and out.err.count("\n") == 1
    assert "INVALID_ARGUMENT" in out.err and "more than max_boxes=4" in out.err
    missing = str(tmp_path / "missing.mp4")
    code, out = run_main(capsys, *common, f"--video={missing}", f"--boxes={csv}",
                         "--server=127.0.0.1:1")
    assert code == 1 and out.err.count("\n") == 1 and missing in out.err
    code, out = run_main(capsys, *common, f"--boxes={csv}", f"--server={grpc_addr}",
                         "--signature_name=serve_examples")
    assert code == 1 and "--boxes needs --signature_name=serving_default" in out.err
