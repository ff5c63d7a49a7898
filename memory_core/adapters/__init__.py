"""Adapters: one per SDK or engine behind a port of ``memory_core.ports``."""
