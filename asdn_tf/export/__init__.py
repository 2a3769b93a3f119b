"""Exports for serving: a SavedModel with its encoded-image checks (saved_model.py,
encoded_image.py, request_checks.py), TFLite (tflite.py), ONNX (onnx.py, onnx_resize.py) and
ncnn (ncnn.py), one row each in formats.py, all checked against Keras by verification.py;
`python -m asdn_tf.export` writes them (asdn_tf/cli/export.py), refusing what it can before
TensorFlow loads (command_checks.py, output_kinds.py)."""
