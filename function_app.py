"""The Azure Functions app: the Durable app object and its blueprints, nothing else (and where telemetry goes)."""

import azure.durable_functions as df
import azure.functions as func

import http_api
import inspector
import mcp_api
import observability
import orchestrations

observability.configure()

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)
for blueprint in (*http_api.blueprints, *inspector.blueprints, *mcp_api.blueprints, *orchestrations.blueprints):
    app.register_functions(blueprint)
