"""The MCP side of the app: memory as MCP tools (the Functions MCP extension's tool triggers), one blueprint."""

from mcp_api.tools import bp as tools

blueprints = (tools,)
