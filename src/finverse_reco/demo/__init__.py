"""The synthetic FinVerse world for demos, tests and evaluation; no production path imports it."""

from finverse_reco.demo.population import DemoUser
from finverse_reco.demo.world import DEFAULT_END, DemoWorld, generate_world, write_world

__all__ = ["DEFAULT_END", "DemoUser", "DemoWorld", "generate_world", "write_world"]
