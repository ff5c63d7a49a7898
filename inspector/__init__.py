"""The memory inspector: a page of the app that shows what the memory holds about each user (admin keys on Azure)."""

from inspector.routes import bp as inspector

blueprints = (inspector,)
