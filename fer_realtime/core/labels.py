"""The seven FER2013 emotion classes and the folder-name aliases people use for them."""

from __future__ import annotations

# FER2013's own class index order (the `emotion` column of the Kaggle CSV).
EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

_ALIASES = {
    "anger": "angry",
    "angry": "angry",
    "mad": "angry",
    "disgust": "disgust",
    "disgusted": "disgust",
    "contempt_disgust": "disgust",
    "fear": "fear",
    "fearful": "fear",
    "scared": "fear",
    "afraid": "fear",
    "happy": "happy",
    "happiness": "happy",
    "joy": "happy",
    "sad": "sad",
    "sadness": "sad",
    "surprise": "surprise",
    "surprised": "surprise",
    "neutral": "neutral",
    "calm": "neutral",
}


def canonical_emotion(name: str) -> str | None:
    """Map a class or folder name to one of EMOTIONS (case-insensitive, common aliases); None if it is none of them."""
    key = name.strip().lower().replace("-", "_").replace(" ", "_")
    return _ALIASES.get(key)
