"""Upscale an image file through TF Serving running the ASDN SavedModel (REST or gRPC).

    python serving/client.py --image=in.png --scale=3.3 --output=out.png
    python serving/client.py --image=in.jpg --scale=2 --output=out.png --grpc=localhost:8500

Both protocols call the `upscale_encoded` signature: PNG/JPEG bytes and a scale go in, PNG
bytes come out, so the payload stays small. REST needs only the standard library; gRPC needs
`pip install tensorflow-serving-api grpcio`. An existing --output is replaced only with
--overwrite, and never the input itself; the PNG is written atomically.
"""

import argparse
import base64
import json
import os
import pathlib
import secrets
import sys
import urllib.error
import urllib.request

SIGNATURE = "upscale_encoded"
# How the files the signature accepts start (PNG, JPEG); others are refused before a request.
_ACCEPTED_STARTS = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")


def rest_request(image_bytes, scale, signature=SIGNATURE):
    """The JSON body of a REST predict call (columnar "inputs": `scale` is a scalar)."""
    return {"signature_name": signature,
            "inputs": {"image_bytes": {"b64": base64.b64encode(image_bytes).decode("ascii")},
                       "scale": float(scale)}}


def rest_png(response):
    """PNG bytes from a REST predict response (a single `*_bytes` output comes as {"b64"})."""
    if "error" in response:
        raise RuntimeError(response["error"])
    return base64.b64decode(response["outputs"]["b64"])


def predict_rest(server, model, image_bytes, scale, timeout=600):
    """POSTs to http://server/v1/models/MODEL:predict and returns the PNG bytes."""
    url = f"{server.rstrip('/')}/v1/models/{model}:predict"
    body = json.dumps(rest_request(image_bytes, scale)).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return rest_png(json.load(reply))
    except urllib.error.HTTPError as error:  # TF Serving puts the reason in a JSON body.
        try:
            message = json.load(error).get("error", error.reason)
        except ValueError:
            message = error.reason
        raise RuntimeError(f"HTTP {error.code}: {message}") from None


def grpc_request(image_bytes, scale, model, signature=SIGNATURE):
    """A `PredictRequest` for the encoded-image signature."""
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    scalar = tensor_shape_pb2.TensorShapeProto()
    request.inputs["image_bytes"].CopyFrom(tensor_pb2.TensorProto(
        dtype=types_pb2.DT_STRING, tensor_shape=scalar, string_val=[image_bytes]))
    request.inputs["scale"].CopyFrom(tensor_pb2.TensorProto(
        dtype=types_pb2.DT_FLOAT, tensor_shape=scalar, float_val=[float(scale)]))
    return request


def grpc_png(response):
    """PNG bytes from a `PredictResponse`."""
    return response.outputs["png_bytes"].string_val[0]


def predict_grpc(target, model, image_bytes, scale, timeout=600):
    """Calls PredictionService/Predict at host:port and returns the PNG bytes."""
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    # A large output PNG exceeds gRPC's default 4 MB message limit.
    options = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
    with grpc.insecure_channel(target, options=options) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        try:
            response = stub.Predict(grpc_request(image_bytes, scale, model), timeout=timeout)
        except grpc.RpcError as error:
            raise RuntimeError(f"{error.code().name}: {error.details()}") from None
    return grpc_png(response)


def check_output(image, output, overwrite=False):
    """Raises ValueError unless `output` may be written: it does not exist, or `overwrite` is
    set and it is a file other than `image`."""
    image, output = pathlib.Path(image), pathlib.Path(output)
    if output.is_dir():
        raise ValueError(f"--output {output} is a folder; name the PNG file to write")
    if output.exists() and os.path.samefile(image, output):
        raise ValueError(f"--output {output} is the input image; choose another name")
    if output.exists() and not overwrite:
        raise ValueError(f"--output {output} already exists (pass --overwrite to replace it)")


def write_atomically(path, data):
    """Writes `data` to a temporary file beside `path`, then renames it over `path`, so a
    failure leaves no half-written PNG. (asdn_tf.io.fileio does this for the package; this client
    runs without the package.)"""
    path = pathlib.Path(path)
    temporary = path.parent / f".tmp-{secrets.token_hex(4)}-{path.name}"
    try:
        temporary.write_bytes(data)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", required=True, help="PNG or JPEG file to upscale")
    parser.add_argument("--scale", required=True, type=float, help="factor, e.g. 3.3")
    parser.add_argument("--output", required=True, help="PNG file to write")
    parser.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    parser.add_argument("--model", default="asdn", help="model name in models.config")
    parser.add_argument("--server", default="http://localhost:8501", help="REST address")
    parser.add_argument("--grpc", help="host:port of the gRPC API; uses gRPC instead of REST")
    # One line for a bad argument, where argparse prints the usage too.
    parser.error = lambda message: parser.exit(2, f"error: {message}\n")
    args = parser.parse_args(argv)
    try:
        image_bytes = pathlib.Path(args.image).read_bytes()
        if not image_bytes.startswith(_ACCEPTED_STARTS):
            raise ValueError(f"--image {args.image} is not a PNG or JPEG file, the formats the "
                             "server takes")
        check_output(args.image, args.output, args.overwrite)
        if args.grpc:
            png = predict_grpc(args.grpc, args.model, image_bytes, args.scale)
        else:
            png = predict_rest(args.server, args.model, image_bytes, args.scale)
        check_output(args.image, args.output, args.overwrite)  # again: the request took a while
        write_atomically(args.output, png)
    except (OSError, RuntimeError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {args.output} ({len(png)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
