"""Test scaffolding: not part of the library API, kept out of the library packages.

* ``model_harness``: the shared model test harness (``run_video_backbone_test`` ...).
* ``fake_records``: in-memory fake video records whose pixels encode the frame index.
* ``serving_models`` / ``serving_fixtures``: the tiny exported classifier shared by the serving
  tests (``serving_fixtures`` is a pytest plugin, listed in the root ``conftest.py``).
* ``local_server``: a TF1-session stand-in for TensorFlow Serving (gRPC and REST).
* ``parity_fixtures``: reference PyTorchVideo / PySlowFast / Caffe2 checkpoints.
* ``roi_align_reference``: a NumPy RoIAlign reference.
"""
