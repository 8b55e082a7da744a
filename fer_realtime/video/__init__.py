"""Video: the frame processor for streams (tracking, smoothing, drawing) and whole video files."""
