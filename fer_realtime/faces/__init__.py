"""Faces in a frame: the detectors (haar, BlazeFace, MediaPipe Tasks), crops turned upright, tracking across
frames, and drawing the results."""
