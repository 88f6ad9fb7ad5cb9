"""A tiny local stand-in for TensorFlow Serving, for tests and offline smoke checks.

The real `tensorflow_model_server` binary cannot run here (no Docker engine, not on PyPI or
Debian), so this module reproduces the part of it that matters for our export:

* `SessionRunner` loads the SavedModel with the **TF1 loader** into a `tf.compat.v1.Session`
  and feeds / fetches by the tensor names written in the SignatureDef -- the same path the C++
  server takes (`LoadSavedModel` + `Session::Run`), not the TF2 `tf.saved_model.load` path.
* `PredictionServicer` implements `PredictionService.Predict` over gRPC with the
  tensorflow-serving-api protos (`serve_grpc` starts it on 127.0.0.1).
* `serve_rest` answers `POST /v1/models/<name>[/versions/<v>]:predict` in the REST JSON API's
  columnar (`inputs` -> `outputs`) and row (`instances` -> `predictions`) formats.

Like TF Serving, only the signature name and input keys are checked in Python; tensors go to
`Session::Run` unchanged, so a dtype that differs from the SignatureDef is rejected by the runtime
(`Expects arg[0] to be uint8 but float is provided`) and shapes are left to the graph's own checks.

Unlike a bare servicer, both front ends are bounded (`ServerLimits`): the gRPC message and REST body
size are capped, a TensorProto's declared size is checked before it is built (a 48-byte request
can otherwise declare gigabytes), and every malformed request gets a status (`INVALID_ARGUMENT`,
or a 4xx JSON `{"error": ...}` over REST) rather than a dropped connection.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import math
import re
import socket
import threading
import time
from concurrent import futures
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from slowfast_tf import compat

DEFAULT_SIGNATURE = "serving_default"


@dataclasses.dataclass(frozen=True)
class ServerLimits:
    """What one request may cost the local servers.

    Args:
        max_request_bytes: int, largest gRPC message and REST body, and the most bytes the input
            tensors of one request may declare (checked before they are built). Default 64 MiB:
            a 32-frame 256 x 256 clip is 6 MB raw, ~25 MB as REST JSON.
        read_timeout_s: float, REST socket timeout while reading a request.
    """

    max_request_bytes: int = 64 * 2**20
    read_timeout_s: float = 30.0

    def __post_init__(self):
        if not isinstance(self.max_request_bytes, int) or self.max_request_bytes < 1:
            raise ValueError(
                f"`max_request_bytes` must be a positive int. Received: {self.max_request_bytes!r}"
            )
        if not self.read_timeout_s > 0:
            raise ValueError(f"`read_timeout_s` must be > 0. Received: {self.read_timeout_s!r}")


class PredictError(ValueError):
    """A request the server rejects; `code` is the gRPC status name (e.g. `INVALID_ARGUMENT`)."""

    def __init__(self, message: str, code: str = "INVALID_ARGUMENT"):
        super().__init__(message)
        self.code = code


class SessionRunner:
    """Runs a SavedModel's signatures through the TF1 session loader, as TF Serving does.

    Args:
        export_dir: str, a SavedModel version directory (`<base>/<name>/<version>`).
        tags: tuple of str, the MetaGraph tags (`serve`).
    """

    def __init__(self, export_dir: str, tags: tuple[str, ...] = ("serve",)):
        self.export_dir = export_dir
        self.graph = tf.Graph()
        self.session = tf.compat.v1.Session(graph=self.graph)
        with self.graph.as_default():
            meta_graph = tf.compat.v1.saved_model.loader.load(self.session, list(tags), export_dir)
        self.signature_defs = {
            k: v for k, v in meta_graph.signature_def.items() if not k.startswith("__")
        }
        self._lock = threading.Lock()

    def input_specs(self, signature_name: str = DEFAULT_SIGNATURE) -> dict[str, tuple]:
        """`{input_key: (tf.DType, shape list with None for unknown)}` from the SignatureDef."""
        sig = self._signature(signature_name)
        return {k: _dtype_and_shape(v) for k, v in sig.inputs.items()}

    def _signature(self, name: str):
        if name not in self.signature_defs:
            raise PredictError(
                f"Serving signature name: \"{name}\" not found in signature def. "
                f"Available: {sorted(self.signature_defs)}"
            )
        return self.signature_defs[name]

    def run(
        self, signature_name: str, inputs: dict[str, np.ndarray], output_filter=()
    ) -> dict[str, np.ndarray]:
        """Feeds `inputs` by SignatureDef tensor name and fetches the (filtered) outputs.

        Like the C++ server, nothing is checked in Python beyond the input keys: the tensors go
        to `Session::Run` as they are, so a wrong dtype is rejected by the runtime and a wrong
        shape by the graph's own checks (TF Serving does no shape validation).

        Raises:
            PredictError: on unknown keys or any error raised while running the graph.
        """
        sig = self._signature(signature_name)
        missing = sorted(set(sig.inputs) - set(inputs))
        extra = sorted(set(inputs) - set(sig.inputs))
        if missing or extra:
            raise PredictError(
                f"input size does not match signature '{signature_name}': expects inputs "
                f"{sorted(sig.inputs)}. Sent extra: {extra}. Missing but required: {missing}."
            )
        for key, value in inputs.items():
            shape = np.shape(value)
            if shape and shape[0] == 0:
                raise PredictError(
                    f"Input '{key}' is empty (batch size 0); send at least one. "
                    f"Received: shape {list(shape)}"
                )
        names = list(output_filter) or list(sig.outputs)
        unknown = sorted(set(names) - set(sig.outputs))
        if unknown:
            raise PredictError(f"output tensor alias not found in signature: {unknown}")
        feeds = {self._tensor(sig.inputs[k].name): _as_feed(v) for k, v in inputs.items()}
        fetches = [self._tensor(sig.outputs[k].name) for k in names]
        try:
            with self._lock:
                # The raw C API call: `Session.run` would check shapes against the placeholder
                # and silently cast dtypes in Python, which the C++ server does not do.
                values = compat.session_run_raw(self.session, feeds, fetches)
        except tf.errors.OpError as e:
            raise PredictError(e.message, code=_grpc_code_name(e)) from e
        return dict(zip(names, values))

    def _tensor(self, name: str) -> tf.Tensor:
        return self.graph.get_tensor_by_name(name)

    def close(self):
        self.session.close()


def _as_feed(value) -> np.ndarray:
    value = np.asarray(value)
    if value.dtype.kind in "SU":  # numpy fixed-width strings -> bytes objects, as a TensorProto has
        value = value.astype(object)
    return value


def _dtype_and_shape(tensor_info):
    dtype = tf.as_dtype(tensor_info.dtype)
    if tensor_info.tensor_shape.unknown_rank:
        return dtype, None
    return dtype, [d.size if d.size >= 0 else None for d in tensor_info.tensor_shape.dim]


def _grpc_code_name(error: tf.errors.OpError) -> str:
    return {tf.errors.INVALID_ARGUMENT: "INVALID_ARGUMENT", tf.errors.NOT_FOUND: "NOT_FOUND"}.get(
        error.error_code, "INTERNAL"
    )


# ------------------------------------------------------------------------------------- gRPC ---
class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """`PredictionService.Predict` backed by `SessionRunner`s.

    Args:
        models: `{model_name: (version, SessionRunner)}`.
        limits: `ServerLimits` (declared tensor bytes).
    """

    def __init__(
        self, models: dict[str, tuple[int, SessionRunner]], limits: ServerLimits | None = None
    ):
        self.models = models
        self.limits = limits or ServerLimits()

    def Predict(self, request, context):  # noqa: N802 (gRPC method name)
        name = request.model_spec.name
        if name not in self.models:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Servable not found for request: {name}")
        version, runner = self.models[name]
        if request.model_spec.HasField("version") and request.model_spec.version.value != version:
            context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"Servable not found for request: Specific({name}, {request.model_spec.version.value})",
            )
        signature = request.model_spec.signature_name or DEFAULT_SIGNATURE
        try:
            inputs = tensors_from_protos(request.inputs, self.limits.max_request_bytes)
            outputs = runner.run(signature, inputs, list(request.output_filter))
        except PredictError as e:
            context.abort(getattr(grpc.StatusCode, e.code), str(e))
        response = predict_pb2.PredictResponse()
        response.model_spec.name = name
        response.model_spec.version.value = version
        response.model_spec.signature_name = signature
        for key, value in outputs.items():
            response.outputs[key].CopyFrom(tf.make_tensor_proto(value))
        return response


def tensors_from_protos(protos, max_bytes: int) -> dict[str, np.ndarray]:
    """`{key: TensorProto}` -> numpy arrays, refusing what would be too large *before* building it.

    `tf.make_ndarray` trusts `tensor_shape`: a proto with one `int_val` and dims
    `[1000, 600, 600, 3]` is broadcast to 1.08 GB. So dims must be known and >= 0, the declared
    bytes of all inputs (elements x item size) at most `max_bytes`, and `tensor_content` exactly
    that long.

    Raises:
        PredictError: INVALID_ARGUMENT, naming the input and what it declared.
    """
    declared, out = 0, {}
    for key, proto in protos.items():
        try:
            dtype = tf.as_dtype(proto.dtype)
            itemsize = np.dtype(dtype.as_numpy_dtype).itemsize  # strings: one object pointer
        except TypeError as e:
            raise PredictError(
                f"Input '{key}' has an unsupported dtype. Received: dtype enum {proto.dtype}"
            ) from e
        if proto.tensor_shape.unknown_rank:
            raise PredictError(f"Input '{key}' must have a known shape (tensor_shape.unknown_rank).")
        dims = [d.size for d in proto.tensor_shape.dim]
        if any(d < 0 for d in dims):
            raise PredictError(f"Input '{key}' has a negative dimension. Received: shape {dims}")
        nbytes = math.prod(dims) * itemsize
        declared += nbytes
        if declared > max_bytes:
            raise PredictError(
                f"Input '{key}' of shape {dims} ({dtype.name}) declares {nbytes} bytes; the "
                f"request may hold at most max_request_bytes={max_bytes}."
            )
        if proto.tensor_content and len(proto.tensor_content) != nbytes:
            raise PredictError(
                f"Input '{key}': tensor_content has {len(proto.tensor_content)} bytes but shape "
                f"{dims} ({dtype.name}) needs {nbytes}."
            )
        try:
            out[key] = tf.make_ndarray(proto)
        except Exception as e:  # numpy reshape / dtype errors of a bad proto
            raise PredictError(f"Input '{key}' is not a valid TensorProto: {e}") from e
    return out


def serve_grpc(
    models: dict[str, tuple[int, SessionRunner]], port: int = 0, limits: ServerLimits | None = None
):
    """Starts a loopback gRPC PredictionService. Returns `(server, port)`; call `server.stop(0)`.

    A message over `limits.max_request_bytes` is refused by gRPC itself (RESOURCE_EXHAUSTED).
    """
    limits = limits or ServerLimits()
    options = [
        ("grpc.max_receive_message_length", limits.max_request_bytes),
        ("grpc.max_send_message_length", -1),
    ]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), options=options)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionServicer(models, limits), server
    )
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    return server, bound


# ------------------------------------------------------------------------------------- REST ---
_PREDICT_PATH = re.compile(r"^/v1/models/([^/:]+)(?:/versions/(\d+))?:predict$")
_DISCARD_BYTES, _DISCARD_SECONDS = 16 * 2**20, 1.0


class _HttpError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _from_json(value, dtype: tf.DType, key: str) -> np.ndarray:
    """A JSON value -> numpy array of `dtype`; ragged, too deep or mistyped values -> PredictError."""
    try:
        array = np.asarray(value, dtype=object if dtype == tf.string else None)
    except ValueError as e:  # ragged lists, or more than numpy's 64 dimensions
        raise PredictError(f"Input '{key}' is not a rectangular array: {e}") from e
    if dtype == tf.string:
        # Leaves are strings or {"b64": "..."}; anything else (a list left by ragged rows, a
        # number, null) is refused rather than turned into text.
        out = np.empty(array.shape, dtype=object)
        for index, leaf in np.ndenumerate(array):
            if isinstance(leaf, str):
                out[index] = leaf.encode("utf-8")
            elif isinstance(leaf, dict) and set(leaf) == {"b64"} and isinstance(leaf["b64"], str):
                try:
                    out[index] = base64.b64decode(leaf["b64"], validate=True)
                except (binascii.Error, ValueError) as e:
                    raise PredictError(f"Input '{key}' has invalid base64: {e}") from e
            else:
                raise PredictError(
                    f"Input '{key}' must be a rectangular array of strings or {{\"b64\": ...}} "
                    f"objects. Received an element of type {type(leaf).__name__}"
                )
        return out
    if array.dtype.kind not in "iufb":
        raise PredictError(f"Input '{key}' must be numeric for {dtype.name}. Received: {array.dtype}")
    if dtype.is_integer:
        if array.dtype.kind == "f" and not np.all(np.equal(np.floor(array), array)):
            raise PredictError(f"Input '{key}' must hold integers for {dtype.name}.")
        if array.size and (array.min() < dtype.min or array.max() > dtype.max):
            raise PredictError(
                f"Input '{key}' has values outside the {dtype.name} range "
                f"[{dtype.min}, {dtype.max}]."
            )
    return array.astype(dtype.as_numpy_dtype)


def _to_json(array: np.ndarray):
    if array.dtype.kind in "SO":
        return np.vectorize(lambda b: b.decode("utf-8"), otypes=[object])(array).tolist()
    return array.tolist()


def _json_object(data: bytes) -> dict:
    """REST body bytes -> the JSON object; 400 for anything else."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _HttpError(400, f"The body is not UTF-8 ({e.reason} at byte {e.start}).") from e
    try:
        body = json.loads(text)
    except RecursionError as e:
        raise _HttpError(400, "The JSON body is nested too deeply.") from e
    except ValueError as e:  # JSONDecodeError, or an integer with too many digits
        raise _HttpError(400, f"The body is not valid JSON: {e}") from e
    if not isinstance(body, dict):
        raise _HttpError(
            400, "The JSON body must be an object with 'instances' or 'inputs'. "
            f"Received: {type(body).__name__}"
        )
    return body


def _request_inputs(body: dict, specs: dict) -> tuple[dict, bool]:
    """The JSON object -> (`{key: JSON value}`, row format?); 400 for anything malformed."""
    if ("instances" in body) == ("inputs" in body):
        raise _HttpError(400, "The JSON body needs exactly one of 'instances' or 'inputs'.")
    single = next(iter(specs)) if len(specs) == 1 else None
    if "inputs" in body:
        raw = body["inputs"]
        if not isinstance(raw, dict):
            if single is None:
                raise _HttpError(400, f"'inputs' must be an object keyed by {sorted(specs)}.")
            raw = {single: raw}
        return raw, False
    rows = body["instances"]
    if not isinstance(rows, list):
        raise _HttpError(400, f"'instances' must be a list. Received: {type(rows).__name__}")
    if not rows:
        raise _HttpError(400, "'instances' is empty (batch size 0); send at least one.")
    if all(isinstance(r, dict) for r in rows):
        for i, row in enumerate(rows):
            if set(row) != set(specs):
                raise _HttpError(
                    400, f"Instance {i} has keys {sorted(row)}; the signature has {sorted(specs)}."
                )
        return {k: [r[k] for r in rows] for k in specs}, True
    if single is None or any(isinstance(r, dict) for r in rows):
        raise _HttpError(
            400, f"Each instance must be an object keyed by {sorted(specs)}"
            + (f" (or, for this single-input signature, a bare '{single}' value)." if single else ".")
        )
    return {single: rows}, True


class _RestHandler(BaseHTTPRequestHandler):
    models: dict[str, tuple[int, SessionRunner]] = {}
    limits = ServerLimits()
    # A garbled request line still gets a status line and headers (not an HTTP/0.9 bare body).
    default_request_version = "HTTP/1.0"

    def log_message(self, *args):  # keep test output quiet
        pass

    def _reply(self, status: int, body: dict, headers: dict | None = None):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def send_error(self, code, message=None, explain=None):
        """http.server's own errors (bad request line, unknown method, long headers) as JSON."""
        self.close_connection = True
        self._reply(code, {"error": message or HTTPStatus(code).phrase})

    def _not_allowed(self):
        self._reply(405, {"error": f"Method {self.command} not allowed; use POST .../:predict."},
                    {"Allow": "POST"})

    do_GET = do_HEAD = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise _HttpError(411, "Chunked bodies are not supported; send a Content-Length.")
        values = self.headers.get_all("Content-Length") or []
        if not values:
            raise _HttpError(411, "A Content-Length header is required.")
        text = values[0].strip()
        if len(set(v.strip() for v in values)) > 1 or not re.fullmatch(r"[0-9]+", text):
            raise _HttpError(
                400, f"Content-Length must be one non-negative integer. Received: {values}"
            )
        limit = self.limits.max_request_bytes
        if len(text) > 18 or int(text) > limit:
            raise _HttpError(
                413, f"The body of {text} bytes exceeds max_request_bytes={limit}."
            )
        length = int(text)
        try:
            data = self.rfile.read(length)
        except TimeoutError as e:
            raise _HttpError(408, f"Timed out reading the {length}-byte body.") from e
        if len(data) != length:
            raise _HttpError(
                400, f"The body ended after {len(data)} of {length} bytes (Content-Length)."
            )
        self._body_read = True
        return data

    def _predict(self) -> dict:
        match = _PREDICT_PATH.match(self.path)
        if not match or match.group(1) not in self.models:
            raise _HttpError(404, f"Servable not found for request: {self.path}")
        version, runner = self.models[match.group(1)]
        if match.group(2) and int(match.group(2)) != version:
            raise _HttpError(404, f"Servable not found for version {match.group(2)}")
        body = _json_object(self._read_body())
        signature = body.get("signature_name", DEFAULT_SIGNATURE)
        if not isinstance(signature, str):
            raise _HttpError(400, f"'signature_name' must be a string. Received: {signature!r}")
        try:
            specs = runner.input_specs(signature)
            raw, rows = _request_inputs(body, specs)
            unknown = sorted(set(raw) - set(specs))
            if unknown:
                raise PredictError(f"Unknown inputs {unknown}; signature has {sorted(specs)}")
            inputs = {k: _from_json(v, specs[k][0], k) for k, v in raw.items()}
            outputs = runner.run(signature, inputs)
        except PredictError as e:
            raise _HttpError(404 if e.code == "NOT_FOUND" else 400, str(e)) from e
        if rows:
            n = len(next(iter(outputs.values())))
            return {"predictions": [{k: _to_json(v[i]) for k, v in outputs.items()} for i in range(n)]}
        return {"outputs": {k: _to_json(v) for k, v in outputs.items()}}

    def do_POST(self):  # noqa: N802
        self._body_read = False
        try:
            status, body = 200, self._predict()
        except _HttpError as e:
            status, body = e.status, {"error": str(e)}
        except Exception as e:  # a bug or runtime failure is still an HTTP answer
            status, body = 500, {"error": f"Internal error: {type(e).__name__}: {e}"}
        self._reply(status, body)
        if not self._body_read:  # refused before (or while) reading the body
            self.close_connection = True
            self._discard_unread_body()

    def _discard_unread_body(self):
        """Closing a socket with unread input sends a TCP reset, which can destroy the error
        response before the client reads it; so stop writing and swallow (boundedly) what the
        client is still sending."""
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(_DISCARD_SECONDS)
            deadline, left = time.monotonic() + _DISCARD_SECONDS, _DISCARD_BYTES
            while left > 0 and time.monotonic() < deadline:
                chunk = self.connection.recv(min(65536, left))
                if not chunk:
                    break
                left -= len(chunk)
        except OSError:
            pass


def serve_rest(
    models: dict[str, tuple[int, SessionRunner]], port: int = 0, limits: ServerLimits | None = None
):
    """Starts a loopback REST server in a thread. Returns `(server, port)`; call `server.shutdown()`.

    Every answer is JSON: `{"predictions"|"outputs": ...}` or `{"error": ...}` with a 4xx status
    (400 malformed, 404 unknown model or path, 405 method, 408 slow body, 411 no Content-Length,
    413 body over `limits.max_request_bytes`) or 500.
    """
    limits = limits or ServerLimits()
    # `timeout`: StreamRequestHandler's socket timeout while reading a request.
    attrs = {"models": models, "limits": limits, "timeout": limits.read_timeout_s}
    handler = type("RestHandler", (_RestHandler,), attrs)
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]
