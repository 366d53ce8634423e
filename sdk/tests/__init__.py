"""Tests of the SDK and the studio CLI (sdk/); collected by the root pytest configuration."""
