"""Client against the local gRPC PredictionService and REST server (TF1-session backed)."""

import json
import os
import subprocess
import sys
import urllib.request

import av
import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_service_pb2_grpc

from slowfast_tf.clip_spec import ClipSpec
from slowfast_tf.serving import client, tfserving
from slowfast_tf.testing import local_server
from slowfast_tf.testing.serving_models import LABELS, MODEL_NAME, TINY_CLIP_SPEC

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def video_path(tmp_path_factory):
    """45 frames of 96x128 at 30 fps: a bright square moving over a gradient (mpeg4)."""
    path = str(tmp_path_factory.mktemp("videos") / "moving_square.mp4")
    yy, xx = np.mgrid[0:96, 0:128]
    with av.open(path, "w") as container:
        stream = container.add_stream("mpeg4", rate=30)
        stream.width, stream.height, stream.pix_fmt = 128, 96, "yuv420p"
        for t in range(45):
            img = np.stack([xx * 2, yy * 2, np.full_like(xx, 60)], -1).astype(np.uint8)
            img[30:60, 2 * t : 2 * t + 30] = 255
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture(scope="module")
def servers(session_runner, serving_export):
    models = {MODEL_NAME: (serving_export[0].version, session_runner)}
    grpc_server, grpc_port = local_server.serve_grpc(models)
    rest_server, rest_port = local_server.serve_rest(models)
    yield f"127.0.0.1:{grpc_port}", f"127.0.0.1:{rest_port}"
    grpc_server.stop(0)
    rest_server.shutdown()


def test_clip_indices_follow_pyslowfast():
    # 8 frames at rate 2 of a 30 fps video = a 16-frame window; torch linspace(0, 15, 8).long().
    np.testing.assert_array_equal(
        client.clip_indices(100, 30.0, 8, 2), [0, 2, 4, 6, 8, 10, 12, 15]
    )
    np.testing.assert_array_equal(
        client.clip_indices(100, 30.0, 8, 2, position="center"), [42, 44, 46, 48, 50, 52, 54, 57]
    )
    # 60 fps: the window covers twice the native frames; a short video clamps to its last frame.
    assert client.clip_indices(100, 60.0, 8, 2)[-1] == 31
    np.testing.assert_array_equal(client.clip_indices(5, 30.0, 4, 2), [0, 2, 4, 4])
    with pytest.raises(ValueError, match="position"):
        client.clip_indices(100, 30.0, 8, 2, position="end")
    with pytest.raises(ValueError, match="fps"):
        client.clip_indices(100, 0.0, 8, 2)


def test_decode_video(video_path):
    frames, fps = client.decode_video(video_path)
    assert frames.shape == (45, 96, 128, 3) and frames.dtype == np.uint8 and fps == 30.0
    small, _ = client.decode_video(video_path, resize_short_side=48)
    assert small.shape == (45, 48, 64, 3)
    # The moving square is where it was drawn (lossy codec: compare coarsely).
    assert frames[10, 35:55, 25:45].mean() > 200 and frames[10, 35:55, 70:90].mean() < 200
    clip = client.load_clip(
        video_path, num_frames=8, sampling_rate=2, resize_short_side=72, square=False
    )
    assert clip.shape == (1, 8, 72, 96, 3)
    # load_clip stops decoding after the first window; the clip is the same as from all frames.
    every, _ = client.decode_video(video_path, resize_short_side=72)
    np.testing.assert_array_equal(clip[0], every[client.clip_indices(45, 30.0, 8, 2)])
    assert len(client.decode_video(video_path, max_frames=10)[0]) == 10
    centered = client.load_clip(
        video_path, 8, 2, resize_short_side=72, position="center", square=False
    )
    np.testing.assert_array_equal(centered[0], every[[14, 16, 18, 20, 23, 25, 27, 29]])
    square = client.load_clip(video_path, 8, 2, resize_short_side=72)
    np.testing.assert_array_equal(square, clip[:, :, :, 12:84])  # ceil((96 - 72) / 2) = 12


def test_grpc_and_rest_match_the_session(video_path, servers, session_runner):
    grpc_addr, rest_addr = servers
    clip = client.load_clip(video_path, num_frames=8, sampling_rate=2, resize_short_side=72)
    expected = session_runner.run("serving_default", {"frames": clip})
    # The client's square crop does not change the server's view (center crops compose).
    full = client.load_clip(video_path, 8, 2, resize_short_side=72, square=False)
    np.testing.assert_array_equal(
        session_runner.run("serving_default", {"frames": full})["probabilities"],
        expected["probabilities"],
    )
    by_grpc = client.predict_grpc(clip, grpc_addr, MODEL_NAME)
    by_rest = client.predict_rest(clip, rest_addr, MODEL_NAME)
    for got in (by_grpc, by_rest):
        np.testing.assert_allclose(got["probabilities"], expected["probabilities"], rtol=1e-6)
        np.testing.assert_array_equal(got["top_k_ids"], expected["top_k_ids"])
    assert by_grpc["top_k_labels"].tolist() == expected["top_k_labels"].tolist()
    assert by_rest["top_k_labels"].tolist() == [[b.decode() for b in r] for r in expected["top_k_labels"]]
    assert client.format_top_k(by_grpc).startswith(f"1. {LABELS[expected['top_k_ids'][0, 0]]} ")


def test_serve_examples_agrees_with_frames(video_path, servers):
    """The server cuts the same window out of the whole (JPEG-coded) video as the client does."""
    grpc_addr, rest_addr = servers
    kwargs = dict(model_name=MODEL_NAME)  # no clip setting: the client asks the model
    examples = client.classify(video_path, grpc_addr, signature_name="serve_examples", **kwargs)
    examples_rest = client.classify(
        video_path, rest_addr, rest=True, signature_name="serve_examples", **kwargs
    )
    np.testing.assert_allclose(
        examples_rest["probabilities"], examples["probabilities"], rtol=1e-6, atol=1e-7
    )
    # Sending only the first window (16 frames) instead of all 45 changes nothing.
    capped = client.classify(
        video_path, grpc_addr, signature_name="serve_examples", max_frames=16, **kwargs
    )
    np.testing.assert_allclose(capped["probabilities"], examples["probabilities"], rtol=1e-6)
    # Same clip through serving_default after the same JPEG round trip: equal up to float noise.
    clip = client.load_clip(video_path, num_frames=8, sampling_rate=2, resize_short_side=72)
    jpeg = np.stack([tf.io.decode_jpeg(tf.io.encode_jpeg(f, quality=95)).numpy() for f in clip[0]])
    frames = client.predict_grpc(jpeg[None], grpc_addr, MODEL_NAME)
    np.testing.assert_allclose(examples["probabilities"], frames["probabilities"], atol=1e-5)


@pytest.mark.parametrize(
    "frames,match",
    [
        (np.zeros((1, 8, 72, 72, 3), np.float32), "must be uint8"),
        (np.zeros((8, 72, 72, 3), np.uint8), r"\[batch, T, H, W, 3\]"),
        (np.zeros((1, 8, 72, 72, 1), np.uint8), r"\[batch, T, H, W, 3\]"),
        (np.zeros((1, 0, 72, 72, 3), np.uint8), "no empty dimension"),
        ([[0]], "numpy array"),
    ],
)
def test_client_rejects_bad_frames_before_sending(frames, match):
    # Port 1 on loopback has no server: a ValueError proves nothing was sent.
    for predict in (client.predict_grpc, client.predict_rest):
        with pytest.raises(ValueError, match=match):
            predict(frames, "127.0.0.1:1", MODEL_NAME)


def test_server_errors_reach_the_caller(servers):
    grpc_addr, rest_addr = servers
    # Bypass the client's checks to see what the signature / server says.
    with grpc.insecure_channel(grpc_addr) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = tfserving.predict_request(
            MODEL_NAME, {"frames": np.zeros((1, 8, 72, 72, 3), np.float32)}
        )
        with pytest.raises(grpc.RpcError) as info:
            stub.Predict(request)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "Expects arg[0] to be uint8 but float is provided" in info.value.details()
        request = tfserving.predict_request(
            MODEL_NAME, {"frames": np.zeros((1, 8, 72, 72, 4), np.uint8)}
        )
        with pytest.raises(grpc.RpcError) as info:
            stub.Predict(request)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "not compatible with expected shape [?,?,?,?,3]" in info.value.details()
    clip = np.zeros((1, 8, 72, 72, 3), np.uint8)
    with pytest.raises(RuntimeError, match="NOT_FOUND"):
        client.predict_grpc(clip, grpc_addr, "no_such_model")
    with pytest.raises(RuntimeError, match="HTTP 404"):
        client.predict_rest(clip, rest_addr, "no_such_model")
    body = json.dumps({"inputs": {"frames": np.full((1, 2, 4, 4, 3), 0.5).tolist()}}).encode()
    request = urllib.request.Request(
        f"http://{rest_addr}/v1/models/{MODEL_NAME}:predict", data=body, method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as http_info:
        urllib.request.urlopen(request)
    assert http_info.value.code == 400
    assert "must hold integers for uint8" in json.loads(http_info.value.read())["error"]


def test_rest_row_format(servers, session_runner):
    _, rest_addr = servers
    clip = np.random.default_rng(0).integers(0, 256, (2, 8, 72, 72, 3), dtype=np.uint8)
    body = json.dumps({"instances": clip.tolist()}).encode()
    url = f"http://{rest_addr}/v1/models/{MODEL_NAME}/versions/1:predict"
    with urllib.request.urlopen(urllib.request.Request(url, data=body)) as resp:
        predictions = json.loads(resp.read())["predictions"]
    expected = session_runner.run("serving_default", {"frames": clip})
    assert len(predictions) == 2 and set(predictions[0]) == {
        "probabilities", "top_k_ids", "top_k_labels"
    }
    np.testing.assert_allclose(
        [p["probabilities"] for p in predictions], expected["probabilities"], rtol=1e-6
    )


def test_command_line(video_path, servers):
    """The real `python -m slowfast_tf.serving.client` process against the local gRPC server."""
    cmd = [
        sys.executable, "-m", "slowfast_tf.serving.client", f"--video={video_path}",
        f"--server={servers[0]}", f"--model_name={MODEL_NAME}",  # no clip flag: from the model
    ]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "RuntimeWarning" not in proc.stderr, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert "gRPC" in lines[0]
    assert len(lines) == 4 and lines[1].startswith("1. ") and any(x in lines[1] for x in LABELS)


def run_main(capsys, *argv):
    """`client.main` with its own FlagValues (what `python -m` runs, minus process start-up)."""
    from absl import flags

    flag_values = flags.FlagValues()
    client.define_flags(flag_values)
    flag_values(["client", *argv])
    code = client.main([], flag_values=flag_values)
    return code, capsys.readouterr()


def test_command_line_main_rest_and_errors(video_path, servers, capsys):
    common = [f"--video={video_path}"]
    code, out = run_main(capsys, *common, f"--server={servers[1]}", "--rest",
                         f"--model_name={MODEL_NAME}", "--signature_name=serve_examples")
    assert code == 0 and "REST" in out.out and "\n1. " in out.out
    code, out = run_main(capsys, *common, f"--server={servers[0]}", "--model_name=missing")
    assert code == 1 and "error: Predict failed: NOT_FOUND" in out.err


@pytest.mark.slow  # a fresh process imports TF (~15-50 s on 2 loaded cores)
def test_module_help_has_no_runpy_warning():
    """`python -m slowfast_tf.serving.client --help`: the package must not pre-import the client.

    Before the fix `slowfast_tf.serving` imported `export_lib`, which imported `client`, and
    runpy printed "RuntimeWarning: 'slowfast_tf.serving.client' found in sys.modules ...".
    The package also loads lazily, so the client quiets TF's start-up lines (no cuInit noise).
    """
    env = dict(os.environ)
    env.pop("PYTHONWARNINGS", None)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    proc = subprocess.run(
        [sys.executable, "-m", "slowfast_tf.serving.client", "--help"],
        capture_output=True, text=True, timeout=300, cwd=REPO, env=env,
    )
    assert "--video" in proc.stdout and "--signature_name" in proc.stdout, proc.stderr[-2000:]
    assert "RuntimeWarning" not in proc.stderr and "found in sys.modules" not in proc.stderr, (
        proc.stderr[-2000:]
    )
    assert "cuInit" not in proc.stderr and "InitializeLog" not in proc.stderr, proc.stderr[-2000:]


def test_client_asks_the_model_for_its_clip_spec(video_path, servers, session_runner):
    """`metadata` over gRPC and REST gives the export's clip spec; flags override it; the
    default request equals one built by hand from that spec."""
    grpc_addr, rest_addr = servers
    assert client.fetch_clip_spec(grpc_addr, MODEL_NAME) == TINY_CLIP_SPEC
    assert client.fetch_clip_spec(rest_addr, MODEL_NAME, rest=True) == TINY_CLIP_SPEC
    assert client.resolve_clip_spec(grpc_addr, MODEL_NAME, num_frames=16, sampling_rate=None) == (
        TINY_CLIP_SPEC.replace(num_frames=16)
    )
    got = client.classify(video_path, grpc_addr, model_name=MODEL_NAME)
    clip = client.load_clip(video_path, 8, 2, resize_short_side=72)  # TINY_CLIP_SPEC's values
    expected = session_runner.run("serving_default", {"frames": clip})
    np.testing.assert_allclose(got["probabilities"], expected["probabilities"], rtol=1e-6)
    with pytest.raises(RuntimeError, match="NOT_FOUND"):
        client.fetch_clip_spec(grpc_addr, "no_such_model")


def test_client_falls_back_for_an_export_without_metadata(servers, capsys):
    """An export made before clip specs: no `metadata` signature -> defaults, with a warning."""
    class OldRunner:
        def run(self, name, inputs, output_filter=()):
            raise local_server.PredictError(
                f'Serving signature name: "{name}" not found in signature def.', "NOT_FOUND"
            )

    grpc_server, port = local_server.serve_grpc({"old": (1, OldRunner())})
    try:
        assert client.fetch_clip_spec(f"127.0.0.1:{port}", "old") is None
        spec = client.resolve_clip_spec(f"127.0.0.1:{port}", "old", num_frames=8)
    finally:
        grpc_server.stop(0)
    assert spec == ClipSpec(num_frames=8)
    assert "has no `metadata` signature" in capsys.readouterr().err
