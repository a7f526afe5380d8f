"""Shipping a student: ONNX export with optional int8 quantisation (`onnx`), and a torch-free runtime for it (`runtime`)."""
