"""Running a model: the batched engine and its runtimes (TensorFlow, TFLite int8), test-time views,
calibrated confidence, and the analyzer that takes a frame to typed face results."""
