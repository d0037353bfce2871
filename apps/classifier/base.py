"""The one interface every classifier offers, and the shared run loop that keeps it safe.

A classifier takes an image (the encoded file as bytes, or a decoded numpy array in RGB order) and
returns a JSON-serialisable dict. Success results start with the registry fields
``classifier``, ``answer``, ``confidence`` (0..1) and ``elapsed_ms``, followed by the classifier's
own fields; failures are ``{"classifier": name, "error": message}``. Nothing raises to the caller.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy.typing as npt

from apps.classifier.imagedecode import DEFAULT_MAX_PIXELS, DecodedImage, ImageDecodeError, decode_image

Result = dict[str, Any]
ImageInput = bytes | bytearray | memoryview | npt.NDArray[Any]


class ClassifierError(Exception):
    """A classifier could not be created or used; the message is meant for the user as is."""


class UnknownClassifierError(ClassifierError, KeyError):
    """No classifier is registered under that name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


@runtime_checkable
class Classifier(Protocol):
    """What the registry hands out."""

    @property
    def name(self) -> str: ...

    def classify(self, image: ImageInput) -> Result: ...

    def classify_batch(self, images: Sequence[ImageInput]) -> list[Result]: ...


def error_result(name: str, message: str) -> Result:
    return {"classifier": name, "error": message}


def success_result(name: str, answer: str, confidence: float, elapsed_ms: float, **fields: Any) -> Result:
    result: Result = {
        "classifier": name,
        "answer": answer,
        "confidence": round(min(1.0, max(0.0, float(confidence))), 6),
        "elapsed_ms": round(elapsed_ms, 3),
    }
    result.update(fields)
    return result


class BaseClassifier(ABC):
    """Decodes, times and guards; subclasses only turn decoded images into answers.

    ``needed_side`` tells the decoder the smallest side the model works at, so a large baseline
    JPEG can be decoded at 1/2, 1/4 or 1/8 scale (fast, and memory stays bounded).
    """

    needed_side: int | None = None

    def __init__(self, name: str, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        self._name = name
        self.max_pixels = max_pixels

    @property
    def name(self) -> str:
        return self._name

    @abstractmethod
    def _predict(self, images: Sequence[DecodedImage]) -> list[tuple[str, float, dict[str, Any]]]:
        """(answer, confidence, own fields) per image; may raise, the caller contains it."""

    def classify(self, image: ImageInput) -> Result:
        return self.classify_batch([image])[0]

    def classify_batch(self, images: Sequence[ImageInput]) -> list[Result]:
        results: list[Result | None] = [None] * len(images)
        decoded: list[DecodedImage] = []
        slots: list[int] = []
        decode_ms: list[float] = []
        for i, image in enumerate(images):
            t0 = time.perf_counter()
            try:
                decoded.append(decode_image(image, max_pixels=self.max_pixels, needed_side=self.needed_side))
                slots.append(i)
                decode_ms.append((time.perf_counter() - t0) * 1000.0)
            except ImageDecodeError as exc:
                results[i] = error_result(self.name, str(exc))
            except MemoryError:
                results[i] = error_result(self.name, "out of memory while decoding the image")
            except Exception as exc:  # a decoder bug must not take the process down
                results[i] = error_result(self.name, f"could not decode the image: {type(exc).__name__}: {exc}")
        if decoded:
            t0 = time.perf_counter()
            outcomes = self._predict_guarded(decoded)
            # A batch shares one forward pass: charge each image its own decode plus an equal share.
            share_ms = (time.perf_counter() - t0) * 1000.0 / len(decoded)
            for slot, ms, outcome in zip(slots, decode_ms, outcomes, strict=True):
                if isinstance(outcome, str):
                    results[slot] = error_result(self.name, outcome)
                else:
                    answer, confidence, fields = outcome
                    results[slot] = success_result(self.name, answer, confidence, ms + share_ms, **fields)
        return [r if r is not None else error_result(self.name, "no result") for r in results]

    def _predict_guarded(self, images: Sequence[DecodedImage]) -> list[tuple[str, float, dict[str, Any]] | str]:
        try:
            return list(self._checked(self._predict(images), len(images)))
        except Exception as exc:
            if len(images) == 1:
                return [_describe_failure(exc)]
        # One bad image must not spoil the batch: retry one by one.
        out: list[tuple[str, float, dict[str, Any]] | str] = []
        for image in images:
            try:
                out.extend(self._checked(self._predict([image]), 1))
            except Exception as exc:
                out.append(_describe_failure(exc))
        return out

    @staticmethod
    def _checked(outcomes: list[tuple[str, float, dict[str, Any]]], expected: int) -> list[tuple[str, float, dict[str, Any]]]:
        if len(outcomes) != expected:
            raise RuntimeError(f"classifier returned {len(outcomes)} results for {expected} images")
        return outcomes


def _describe_failure(exc: BaseException) -> str:
    if isinstance(exc, MemoryError):
        return "out of memory while classifying the image"
    if isinstance(exc, ClassifierError | ImageDecodeError):
        return str(exc)
    return f"classification failed: {type(exc).__name__}: {exc}"
