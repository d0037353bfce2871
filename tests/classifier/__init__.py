"""Tests for apps/classifier: decoding, the real-vs-animated models, the animal describer, registry and CLI."""
