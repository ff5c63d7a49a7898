"""Resource bodies of the Bicep files checked against Azure Resource Manager's JSON schemas, offline.

The schemas are the deployment schemas of Azure/azure-resource-manager-schemas for the API versions the templates
use (an offline copy in ``../shared/reference/arm-schemas``, see its README). Bicep's type checks come from the same
API specifications, so a body that validates here, with unknown properties as errors, is one ``bicep build`` would
accept without BCP037/BCP036 warnings. A resource becomes the ARM JSON ``bicep build`` would write: ``type``,
``apiVersion``, ``name`` (``parent/child`` for a child resource), its other keys; every expression that is not a
literal becomes an ARM expression string (``[...]``), which the schemas accept for any value.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

import jsonschema_rs

from tests.infra.bicep_tree import Declaration, Expr

ROOT = Path(__file__).resolve().parents[2]
ARM_SCHEMAS = ROOT.parent / "shared" / "reference" / "arm-schemas"
EXPRESSION_REF = "https://schema.management.azure.com/schemas/common/definitions.json#/definitions/expression"
_LOCAL_EXPRESSION = "#/definitions/__expression"
BICEP_ONLY_KEYS = {"parent", "dependsOn", "scope"}


def split_type(resource_type: str) -> tuple[str, str, str]:
    """``Microsoft.Web/sites/config@2024-04-01`` -> (``Microsoft.Web``, ``sites_config``, ``2024-04-01``)."""
    full, api_version = resource_type.split("@", 1)
    provider, *segments = full.split("/")
    return provider, "_".join(segments), api_version


def schema_file(resource_type: str) -> Path:
    provider, _, api_version = split_type(resource_type)
    return ARM_SCHEMAS / api_version / f"{provider}.json"


def _strict(node: Any) -> Any:
    """A copy of a schema in which an object may hold only the properties its schema names.

    Where a schema's ``properties`` sit beside a ``oneOf`` (a resource's ``apiVersion`` and ``type`` beside the
    variants of ``sites/config``), they are moved into every variant, so each variant names all it allows.
    """
    if isinstance(node, list):
        return [_strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    shared, branches = node.get("properties"), node.get("oneOf")
    if isinstance(shared, dict) and isinstance(branches, list):
        required = node.pop("required", [])
        del node["properties"]
        node["oneOf"] = [
            {**b, "properties": {**shared, **b["properties"]}, "required": [*required, *b.get("required", [])]}
            if isinstance(b, dict) and isinstance(b.get("properties"), dict)
            else b
            for b in branches
        ]
    result: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("properties", "definitions", "patternProperties") and isinstance(value, dict):
            result[key] = {name: _strict(schema) for name, schema in value.items()}
        elif key == "$ref" and value == EXPRESSION_REF:
            result[key] = _LOCAL_EXPRESSION
        else:
            result[key] = _strict(value)
    if isinstance(result.get("properties"), dict) and "additionalProperties" not in result:
        result["additionalProperties"] = False
    return result


@functools.cache
def _validator(resource_type: str) -> jsonschema_rs.Draft4Validator:
    _, key, _ = split_type(resource_type)
    document = json.loads(schema_file(resource_type).read_text(encoding="utf-8"))
    common = json.loads((ARM_SCHEMAS / "common" / "definitions.json").read_text(encoding="utf-8"))
    definitions = {**document["definitions"], "__expression": common["definitions"]["expression"]}
    schema = {**copy.deepcopy(document["resourceDefinitions"][key]), "definitions": definitions}
    return jsonschema_rs.Draft4Validator(_strict(schema))


def arm_value(value: Any) -> Any:
    """A Bicep value as ``bicep build`` writes it: literals as they are, anything else an ARM expression string."""
    if isinstance(value, Expr):
        return f"[{value.text}]"
    if isinstance(value, dict):
        return {str(key): arm_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [arm_value(item) for item in value]
    return value


def arm_resource(declaration: Declaration, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ARM JSON of a resource declaration (``body``: its resolved body, else the declared one)."""
    body = declaration.value if body is None else body
    full, api_version = str(declaration.type).split("@", 1)
    name = arm_value(body["name"])
    parent = body.get("parent")
    if isinstance(parent, Expr) and isinstance(body["name"], str):
        name = f"{parent.text}/{name}"  # a child's full name, its parent's symbolic name standing in for the parent's
    resource = {"type": full, "apiVersion": api_version, "name": name}
    resource.update({key: arm_value(value) for key, value in body.items() if key not in BICEP_ONLY_KEYS | {"name"}})
    return resource


def schema_errors(declaration: Declaration, body: dict[str, Any] | None = None) -> list[str]:
    """What the ARM schema of the resource's type and API version finds wrong with it, unknown properties included."""
    resource = arm_resource(declaration, body)
    errors = _validator(str(declaration.type)).iter_errors(resource)
    return sorted(f"{'/'.join(map(str, error.instance_path)) or '<resource>'}: {error.message}" for error in errors)
