"""Tests of the TCP and email baselines and of the embedded mail server."""
