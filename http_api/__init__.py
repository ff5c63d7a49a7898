"""The HTTP side of the app: each blueprint parses, calls one memory_core use case and maps the result."""

from http_api.admin import bp as admin
from http_api.memory import bp as memory

blueprints = (memory, admin)
