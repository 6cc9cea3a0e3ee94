"""Shared fixtures: `vm` (a real VictoriaMetrics on loopback) is available to every test."""

pytest_plugins = ["tests.support.vm"]
