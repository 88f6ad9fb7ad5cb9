"""The local gRPC / REST servers under hostile input: bounded sizes, a status for every error."""

import http.client
import json
import re
import socket
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from slowfast_tf.serving import tfserving
from slowfast_tf.testing import local_server
from slowfast_tf.testing.serving_models import MODEL_NAME

PREDICT = f"/v1/models/{MODEL_NAME}:predict"
TINY_LIMIT = 4096


@pytest.fixture(scope="module")
def servers(session_runner, serving_export):
    """`{"grpc", "rest", "grpc_tiny", "rest_tiny"}` ports; `*_tiny` allow 4 kB requests."""
    models = {MODEL_NAME: (serving_export[0].version, session_runner)}
    tiny = local_server.ServerLimits(max_request_bytes=TINY_LIMIT, read_timeout_s=5.0)
    started = {
        "grpc": local_server.serve_grpc(models),
        "rest": local_server.serve_rest(models),
        "grpc_tiny": local_server.serve_grpc(models, limits=tiny),
        "rest_tiny": local_server.serve_rest(models, limits=tiny),
    }
    yield {name: port for name, (_, port) in started.items()}
    for name, (server, _) in started.items():
        server.stop(0) if name.startswith("grpc") else server.shutdown()


# ------------------------------------------------------------------------------------- gRPC ---
def grpc_predict(port, inputs: dict, signature="serving_default"):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL_NAME
    request.model_spec.signature_name = signature
    for key, proto in inputs.items():
        request.inputs[key].CopyFrom(proto)
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.Predict(request, timeout=60)
    return request, info.value


def tensor(dtype, dims=None, unknown_rank=False, **values):
    shape = tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in dims or []],
        unknown_rank=unknown_rank,
    )
    return tensor_pb2.TensorProto(dtype=dtype, tensor_shape=shape, **values)


@pytest.mark.parametrize(
    "proto,match",
    [
        # The 48-byte request: one int_val broadcast to 1000 x 600 x 600 x 3 = 1.08 GB.
        (tensor(types_pb2.DT_UINT8, [1000, 600, 600, 3], int_val=[0]),
         r"shape \[1000, 600, 600, 3\] \(uint8\) declares 1080000000 bytes; .* "
         r"max_request_bytes=67108864"),
        (tensor(types_pb2.DT_STRING, [10**9], string_val=[b"x"]), "declares 8000000000 bytes"),
        (tensor(types_pb2.DT_UINT8, [-1, 8, 72, 72, 3], int_val=[0]),
         r"negative dimension. Received: shape \[-1, 8, 72, 72, 3\]"),
        (tensor(types_pb2.DT_UINT8, [2**62, -2**62], int_val=[0]), "negative dimension"),
        (tensor(types_pb2.DT_UINT8, unknown_rank=True, int_val=[0]), "known shape"),
        (tensor(types_pb2.DT_UINT8, [1, 8, 72, 72, 3], tensor_content=b"\0" * 10),
         "tensor_content has 10 bytes but shape .* needs 124416"),
        (tensor(types_pb2.DT_STRING, [2], string_val=[b"a", b"b", b"c"]), "not a valid TensorProto"),
        (tensor(999, [1], int_val=[0]), "unsupported dtype"),
        (tensor(types_pb2.DT_UINT8, [0, 8, 72, 72, 3]), r"batch size 0"),
    ],
)
def test_grpc_rejects_crafted_tensors_before_building_them(servers, proto, match):
    started = time.monotonic()
    request, error = grpc_predict(servers["grpc"], {"frames": proto})
    assert request.ByteSize() < 200  # what was sent is tiny, whatever it declares
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert re.search(match, error.details()), error.details()
    assert time.monotonic() - started < 30  # nothing was materialised or run


def test_grpc_batch_zero_examples(servers):
    proto = tf.make_tensor_proto(np.array([], dtype=object).astype(bytes))
    _, error = grpc_predict(servers["grpc"], {"examples": proto}, "serve_examples")
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "batch size 0" in error.details()


def test_grpc_message_cap(servers):
    frames = tf.make_tensor_proto(np.zeros((1, 8, 16, 16, 3), np.uint8))  # 6 kB > 4 kB
    _, error = grpc_predict(servers["grpc_tiny"], {"frames": frames})
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert str(TINY_LIMIT) in error.details()


def test_declared_bytes_count_over_all_inputs():
    protos = {k: tf.make_tensor_proto(np.zeros(3000, np.uint8)) for k in ("a", "b")}
    assert set(local_server.tensors_from_protos(protos, 6000)) == {"a", "b"}
    with pytest.raises(local_server.PredictError, match="Input 'b' .* declares 3000 bytes"):
        local_server.tensors_from_protos(protos, 5999)


# ------------------------------------------------------------------------------------- REST ---
def raw_http(port, data: bytes, half_close=True):
    """Sends raw bytes, reads until the server closes: `(status, headers, parsed JSON body)`."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    response = b"".join(chunks)
    head, _, body = response.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = dict(line.split(": ", 1) for line in lines[1:])
    assert headers["Content-Type"] == "application/json"
    return status, headers, json.loads(body) if body else None


def post(body: bytes, path=PREDICT, headers=None):
    headers = {"Content-Length": str(len(body)), **(headers or {})}
    lines = [f"POST {path} HTTP/1.1", "Host: x"] + [f"{k}: {v}" for k, v in headers.items() if v]
    return "\r\n".join(lines).encode() + b"\r\n\r\n" + body


def deep(depth, leaf="0"):
    return "[" * depth + leaf + "]" * depth


FRAMES = np.zeros((1, 8, 16, 16, 3), np.uint8).tolist()
EXAMPLES = {"signature_name": "serve_examples"}


@pytest.mark.parametrize(
    "body,match",
    [
        (b'{"inputs": "\xff\xfe"}', "not UTF-8"),
        (b"[1, 2]", "must be an object .* Received: list"),
        (b'"frames"', "must be an object"),
        (b"null", "must be an object"),
        (b"{", "not valid JSON"),
        (b"", "not valid JSON"),
        (b'{"inputs": 1' + b"1" * 5000 + b"}", "not valid JSON"),  # int over 4300 digits
        (b'{"inputs": {"frames": [[1, 2], [3]]}}', "not a rectangular array"),
        (json.dumps({**EXAMPLES, "inputs": {"examples": [["a"], ["a", "b"]]}}).encode(),
         "rectangular array of strings"),
        (json.dumps({**EXAMPLES, "inputs": {"examples": [1, 2]}}).encode(),
         "Received an element of type int"),
        (json.dumps({**EXAMPLES, "inputs": {"examples": [{"b64": "@@@"}]}}).encode(),
         "invalid base64"),
        (f'{{"inputs": {{"frames": {deep(100000)}}}}}'.encode(), "nested too deeply"),
        (f'{{"inputs": {{"frames": {deep(70)}}}}}'.encode(), "maximum number of dimension"),
        (b'{"instances": []}', r"'instances' is empty \(batch size 0\)"),
        (b'{"inputs": {"frames": []}}', r"Input 'frames' is empty \(batch size 0\)"),
        (b'{"inputs": []}', r"batch size 0"),
        (b'{"instances": {"frames": 1}}', "'instances' must be a list"),
        (json.dumps({"instances": [FRAMES[0], {"frames": FRAMES[0]}]}).encode(),
         "Each instance must be an object"),
        (json.dumps({"instances": [{"clip": FRAMES[0]}]}).encode(), "Instance 0 has keys"),
        (b'{"signature_name": 7, "inputs": []}', "'signature_name' must be a string"),
        (b'{"signature_name": "nope", "inputs": []}', "not found in signature def"),
        (b'{"inputs": [], "instances": []}', "exactly one of 'instances' or 'inputs'"),
        (json.dumps({"inputs": {"frames": FRAMES, "x": FRAMES}}).encode(), "Unknown inputs"),
        (json.dumps({"inputs": {"frames": np.full((1, 8, 16, 16, 3), 300).tolist()}}).encode(),
         "outside the uint8 range"),
    ],
)
def test_rest_malformed_bodies_get_400_json(servers, body, match):
    status, _, reply = raw_http(servers["rest"], post(body))
    assert status == 400 and re.search(match, reply["error"]), reply


@pytest.mark.parametrize(
    "headers,status,match",
    [
        ({"Content-Length": None}, 411, "Content-Length header is required"),
        ({"Content-Length": None, "Transfer-Encoding": "chunked"}, 411, "Chunked"),
        ({"Content-Length": "abc"}, 400, "non-negative integer. Received: \\['abc'\\]"),
        ({"Content-Length": "-5"}, 400, "non-negative integer"),
        ({"Content-Length": "1e3"}, 400, "non-negative integer"),
        ({"Content-Length": "99999999999999999999999"}, 413, "exceeds max_request_bytes"),
        ({"Content-Length": str(10**12)}, 413,
         "body of 1000000000000 bytes exceeds max_request_bytes=67108864"),
        ({"Content-Length": "100"}, 400, "ended after 2 of 100 bytes"),
    ],
)
def test_rest_bad_content_length(servers, headers, status, match):
    started = time.monotonic()
    got, _, reply = raw_http(servers["rest"], post(b"{}", headers=headers))
    assert got == status and re.search(match, reply["error"]), reply
    assert time.monotonic() - started < 30  # answered at once, not after reading 1 TB


def test_rest_conflicting_content_lengths(servers):
    data = post(b"{}").replace(b"Host: x", b"Host: x\r\nContent-Length: 3")
    status, _, reply = raw_http(servers["rest"], data)
    assert status == 400 and "one non-negative integer" in reply["error"]


def test_rest_body_over_the_cap_is_413_even_while_sent(servers):
    """The whole oversized body is on the wire; the 413 still reaches the client (no reset)."""
    body = json.dumps({"inputs": {"frames": FRAMES}}).encode()
    assert len(body) > TINY_LIMIT
    connection = http.client.HTTPConnection("127.0.0.1", servers["rest_tiny"], timeout=60)
    connection.request("POST", PREDICT, body=body, headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    assert response.status == 413
    assert json.loads(response.read())["error"] == (
        f"The body of {len(body)} bytes exceeds max_request_bytes={TINY_LIMIT}."
    )
    connection.close()


def test_rest_slow_body_times_out_with_408(servers):
    status, _, reply = raw_http(
        servers["rest_tiny"], post(b"{}", headers={"Content-Length": "100"}), half_close=False
    )
    assert status == 408 and "Timed out" in reply["error"]


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_rest_wrong_method_is_405(servers, method):
    connection = http.client.HTTPConnection("127.0.0.1", servers["rest"], timeout=60)
    connection.request(method, PREDICT)
    response = connection.getresponse()
    assert response.status == 405 and response.getheader("Allow") == "POST"
    assert "use POST" in json.loads(response.read())["error"]
    connection.close()


@pytest.mark.parametrize(
    "data,status,match",
    [
        (b"BREW /pot HTTP/1.1\r\nHost: x\r\n\r\n", 501, "Unsupported method"),
        (b"GARBAGE\r\n\r\n", 400, "Bad request"),
        (post(b"{}", path="/v1/models/nope:predict"), 404, "Servable not found"),
        (post(b"{}", path=f"/v1/models/{MODEL_NAME}:classify"), 404, "Servable not found"),
        (post(b"{}", path=f"/v1/models/{MODEL_NAME}/versions/9:predict"), 404, "version 9"),
        (post(b"{}", path="/"), 404, "Servable not found"),
    ],
)
def test_rest_bad_request_lines_and_paths(servers, data, status, match):
    got, _, reply = raw_http(servers["rest"], data)
    assert got == status and match in reply["error"], reply


def test_rest_still_serves_after_abuse(servers, session_runner):
    raw_http(servers["rest"], post(b"\xff" * 100))
    raw_http(servers["rest"], post(b"{}", headers={"Content-Length": str(10**12)}))
    frames = np.random.default_rng(0).integers(0, 256, (1, 8, 16, 16, 3), dtype=np.uint8)
    status, _, reply = raw_http(
        servers["rest"], post(json.dumps({"inputs": {"frames": frames.tolist()}}).encode())
    )
    assert status == 200
    np.testing.assert_allclose(
        reply["outputs"]["probabilities"],
        session_runner.run("serving_default", {"frames": frames})["probabilities"], rtol=1e-6,
    )


def test_grpc_batch_zero_via_client_helpers(servers):
    request = tfserving.predict_request(MODEL_NAME, {"frames": np.zeros((0, 8, 16, 16, 3), np.uint8)})
    with grpc.insecure_channel(f"127.0.0.1:{servers['grpc']}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.Predict(request, timeout=60)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Input 'frames' is empty (batch size 0)" in info.value.details()


def test_server_limits_are_validated():
    with pytest.raises(ValueError, match="max_request_bytes"):
        local_server.ServerLimits(max_request_bytes=0)
    with pytest.raises(ValueError, match="read_timeout_s"):
        local_server.ServerLimits(read_timeout_s=0)
