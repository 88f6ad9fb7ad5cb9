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
"""

from __future__ import annotations

import base64
import json
import re
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

DEFAULT_SIGNATURE = "serving_default"


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
        names = list(output_filter) or list(sig.outputs)
        unknown = sorted(set(names) - set(sig.outputs))
        if unknown:
            raise PredictError(f"output tensor alias not found in signature: {unknown}")
        feeds = {
            self._tensor(sig.inputs[k].name)._as_tf_output(): _as_feed(v)
            for k, v in inputs.items()
        }
        fetches = [self._tensor(sig.outputs[k].name)._as_tf_output() for k in names]
        try:
            with self._lock:
                # The raw C API call: `Session.run` would check shapes against the placeholder
                # and silently cast dtypes in Python, which the C++ server does not do.
                values = self.session._call_tf_sessionrun(None, feeds, fetches, [], None)
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
    """

    def __init__(self, models: dict[str, tuple[int, SessionRunner]]):
        self.models = models

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
            inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
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


def serve_grpc(models: dict[str, tuple[int, SessionRunner]], port: int = 0):
    """Starts a loopback gRPC PredictionService. Returns `(server, port)`; call `server.stop(0)`."""
    # TF Serving accepts messages up to INT32_MAX; clips of raw frames are tens of MB.
    options = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), options=options)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionServicer(models), server
    )
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    return server, bound


# ------------------------------------------------------------------------------------- REST ---
_PREDICT_PATH = re.compile(r"^/v1/models/([^/:]+)(?:/versions/(\d+))?:predict$")


def _from_json(value, dtype: tf.DType, key: str) -> np.ndarray:
    if dtype == tf.string:
        def conv(v):
            if isinstance(v, list):
                return [conv(x) for x in v]
            if isinstance(v, dict) and "b64" in v:
                return base64.b64decode(v["b64"])
            return str(v).encode()

        return np.asarray(conv(value), dtype=object)
    array = np.asarray(value)
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


class _RestHandler(BaseHTTPRequestHandler):
    models: dict[str, tuple[int, SessionRunner]] = {}

    def log_message(self, *args):  # keep test output quiet
        pass

    def _reply(self, status: int, body: dict):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):  # noqa: N802
        match = _PREDICT_PATH.match(self.path)
        if not match or match.group(1) not in self.models:
            return self._reply(404, {"error": f"Servable not found for request: {self.path}"})
        version, runner = self.models[match.group(1)]
        if match.group(2) and int(match.group(2)) != version:
            return self._reply(404, {"error": f"Servable not found for version {match.group(2)}"})
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            signature = body.get("signature_name", DEFAULT_SIGNATURE)
            specs = runner.input_specs(signature)
            if "instances" in body:
                rows = body["instances"]
                if len(specs) == 1 and not (rows and isinstance(rows[0], dict)):
                    rows = [{next(iter(specs)): r} for r in rows]
                raw = {k: [r[k] for r in rows] for k in specs}
            elif "inputs" in body:
                raw = body["inputs"]
                if not isinstance(raw, dict):
                    raw = {next(iter(specs)): raw}
            else:
                raise PredictError("JSON body needs 'instances' or 'inputs'.")
            unknown = sorted(set(raw) - set(specs))
            if unknown:
                raise PredictError(f"Unknown inputs {unknown}; signature has {sorted(specs)}")
            inputs = {k: _from_json(v, specs[k][0], k) for k, v in raw.items()}
            outputs = runner.run(signature, inputs)
        except (PredictError, json.JSONDecodeError, KeyError, TypeError) as e:
            return self._reply(400, {"error": str(e)})
        if "instances" in body:
            n = len(next(iter(outputs.values())))
            preds = [{k: _to_json(v[i]) for k, v in outputs.items()} for i in range(n)]
            return self._reply(200, {"predictions": preds})
        return self._reply(200, {"outputs": {k: _to_json(v) for k, v in outputs.items()}})


def serve_rest(models: dict[str, tuple[int, SessionRunner]], port: int = 0):
    """Starts a loopback REST server in a thread. Returns `(server, port)`; call `server.shutdown()`."""
    handler = type("RestHandler", (_RestHandler,), {"models": models})
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]
