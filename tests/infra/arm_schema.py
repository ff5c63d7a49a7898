"""Resource bodies checked against Azure Resource Manager's JSON schemas, offline, as Bicep checks them.

The schemas are the deployment schemas of Azure/azure-resource-manager-schemas for the resource types and API versions
the templates deploy. Bicep's type checks come from the same API specifications, so a body that validates here, with
unknown properties as errors, is one ``bicep build`` accepts without BCP037/BCP036 warnings. Errors are named as Bicep
names them: BCP037 a property the type does not define, BCP036 a value of the wrong type or outside its enum, BCP035 a
required property missing; other constraints (patterns, lengths, ranges) by their JSON Schema keyword.

The tests read a pruned copy committed next to this file (``arm_schemas/``): only the resource definitions the
templates deploy and the definitions those reach, with the upstream licence and source commit. Regenerate it from the
full offline copy (``../shared/reference/arm-schemas``) after changing a resource type or API version:

    .venv/bin/python -m tests.infra.arm_schema --extract

A value that is not a literal reaches the schema as an ARM expression string (``[...]``), which the schemas accept in
place of any value: ARM evaluates expressions before it validates, so that is checked at deployment only.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import re
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import jsonschema_rs

from tests.infra.bicep_eval import SCENARIOS, Resource, scenario
from tests.infra.bicep_tree import Expr

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT.parent / "shared" / "reference" / "arm-schemas"  # the full offline copy (not in this repository)
COPY = Path(__file__).resolve().parent / "arm_schemas"  # the pruned copy the tests read
COMMON = "https://schema.management.azure.com/schemas/common/definitions.json#/definitions/"
EXPRESSION_REF = COMMON + "expression"
_LOCAL_COMMON = "#/definitions/__common_"
# Where a resource type's definition lives in a provider file, by the target scope it is deployed at.
SECTIONS = {
    "resourceGroup": "resourceDefinitions",
    "subscription": "subscription_resourceDefinitions",
    "managementGroup": "managementGroup_resourceDefinitions",
    "tenant": "tenant_resourceDefinitions",
}
HEADER_KEYS = ("id", "$schema", "title", "description")
# Where ARM's JSON schemas and Bicep's types disagree (both are generated from the REST API specifications), the
# specification wins: these requirements of the schemas are not reported. (type in lower case, property) -> why.
SCHEMA_ONLY_REQUIRED = {
    ("microsoft.resources/resourcegroups", "properties"): (
        "the REST API specification requires only `location` of a ResourceGroup (Azure/azure-rest-api-specs, "
        "specification/resources/resource-manager/Microsoft.Resources/stable/2022-09-01/resources.json); the "
        "schema generator marks `properties` required, and Bicep does not"
    ),
}


# -- where a type's schema is -----------------------------------------------------------------------------------------
def split_type(resource_type: str) -> tuple[str, str]:
    """``Microsoft.Web/sites/config@2024-04-01`` -> (``Microsoft.Web/sites/config``, ``2024-04-01``)."""
    full, api_version = resource_type.split("@", 1)
    return full, api_version


@functools.cache
def schema_index(root: Path = COPY) -> dict[tuple[str, str, str], tuple[str, str]]:
    """(type in lower case, API version, section) -> (file relative to ``root``, key in the section)."""
    index: dict[tuple[str, str, str], tuple[str, str]] = {}
    for path in sorted(root.glob("*/*.json")):
        if path.parent.name == "common":
            continue
        document = json.loads(path.read_text(encoding="utf-8"))
        for section in SECTIONS.values():
            for key, definition in document.get(section, {}).items():
                type_enum = definition.get("properties", {}).get("type", {}).get("enum", [])
                for type_name in type_enum:
                    index[(type_name.lower(), path.parent.name, section)] = (path.relative_to(root).as_posix(), key)
    return index


def locate(resource_type: str, scope: str, root: Path = COPY) -> tuple[str, str, str]:
    """(file, section, key) of a type's schema; KeyError naming what is missing."""
    full, api_version = split_type(resource_type)
    section = SECTIONS[scope]
    found = schema_index(root).get((full.lower(), api_version, section))
    if found is None:
        raise KeyError(f"no schema for {resource_type} ({section}) in {root}")
    return found[0], section, found[1]


# -- the pruned copy --------------------------------------------------------------------------------------------------
def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _reachable(roots: Iterable[Any], own: dict[str, Any], common: dict[str, Any]) -> tuple[set[str], set[str]]:
    """Names of the definitions (of the file, of common/definitions.json) that ``roots`` refer to, transitively."""
    own_names: set[str] = set()
    common_names: set[str] = set()
    pending = [(node, False) for node in roots]
    while pending:
        node, in_common = pending.pop()
        for ref in _refs(node):
            if ref.startswith(COMMON):
                name, names, table, inside = ref[len(COMMON) :], common_names, common, True
            elif ref.startswith("#/definitions/"):
                name, inside = ref[len("#/definitions/") :], in_common
                names, table = (common_names, common) if in_common else (own_names, own)
            else:
                raise ValueError(f"a reference this extraction does not follow: {ref}")
            if name not in names:
                names.add(name)
                pending.append((table[name], inside))
    return own_names, common_names


def used_types() -> set[tuple[str, str]]:
    """(type with API version, target scope) of every resource the test deployments create."""
    return {(r.type, r.scope) for name in SCENARIOS for r in scenario(name).resources}


def extract(source: Path = SOURCE) -> dict[str, Any]:
    """The pruned copy, file by file (relative path -> JSON document), from the full offline copy."""
    common_document = json.loads((source / "common" / "definitions.json").read_text(encoding="utf-8"))
    by_file: dict[str, dict[str, set[str]]] = {}
    for resource_type, scope in sorted(used_types()):
        relative, section, key = locate(resource_type, scope, source)
        by_file.setdefault(relative, {}).setdefault(section, set()).add(key)
    documents: dict[str, Any] = {}
    common_used: set[str] = {"expression"}
    for relative, sections in sorted(by_file.items()):
        document = json.loads((source / relative).read_text(encoding="utf-8"))
        pruned: dict[str, Any] = {key: document[key] for key in HEADER_KEYS if key in document}
        roots = []
        for section, keys in sorted(sections.items()):
            pruned[section] = {key: document[section][key] for key in sorted(keys)}
            roots.extend(pruned[section].values())
        own, common = _reachable(roots, document.get("definitions", {}), common_document["definitions"])
        pruned["definitions"] = {name: document["definitions"][name] for name in sorted(own)}
        common_used |= common
        documents[relative] = pruned
    common_pruned = {key: common_document[key] for key in HEADER_KEYS if key in common_document}
    shared = common_document["definitions"]
    within, across = _reachable([shared[name] for name in common_used], shared, shared)
    common_pruned["definitions"] = {name: shared[name] for name in sorted(common_used | within | across)}
    documents["common/definitions.json"] = common_pruned
    return documents


def source_commit(source: Path = SOURCE) -> str:
    """The upstream commit the full offline copy was taken from (its README says)."""
    match = re.search(r"commit ([0-9a-f]{40})", (source / "README.md").read_text(encoding="utf-8"))
    if match is None:
        raise ValueError(f"{source / 'README.md'} names no source commit")
    return match[1]


def _readme(documents: dict[str, Any], commit: str) -> str:
    lines = [
        "# ARM JSON schemas: the definitions the templates use",
        "",
        "Generated by `.venv/bin/python -m tests.infra.arm_schema --extract` from the offline copy in",
        "`../shared/reference/arm-schemas`; do not edit by hand. The files are pruned copies of the deployment schemas",
        "of the public repository Azure/azure-resource-manager-schemas (https://github.com/Azure/azure-resource-manager-schemas),",
        f"commit {commit}, under its MIT licence (`LICENSE` beside this file): each keeps the upstream",
        "layout (`<api-version>/<file>.json`, `common/definitions.json`) but only the resource definitions that",
        "`infra/bicep` deploys and the definitions they refer to, unchanged.",
        "",
        "| file | resource definitions |",
        "|---|---|",
    ]
    for relative, document in sorted(documents.items()):
        keys = [f"{section}: {', '.join(document[section])}" for section in SECTIONS.values() if section in document]
        lines.append(f"| `{relative}` | {'; '.join(keys) or 'shared definitions'} |")
    return "\n".join(lines) + "\n"


def _dump(document: dict[str, Any]) -> str:
    """JSON with one definition per line: compact, and a diff of a regenerated copy shows which definitions changed."""

    def compact(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))

    lines = []
    for key, value in document.items():
        if isinstance(value, dict) and value and all(isinstance(item, dict) for item in value.values()):
            inner = ",\n".join(f"  {compact(name)}: {compact(item)}" for name, item in value.items())
            lines.append(f" {compact(key)}: {{\n{inner}\n }}")
        else:
            lines.append(f" {compact(key)}: {compact(value)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def write_copy(source: Path = SOURCE, target: Path = COPY) -> list[Path]:
    """Regenerate the pruned copy; returns the files written."""
    documents = extract(source)
    if target.exists():
        shutil.rmtree(target)
    written = []
    for relative, document in documents.items():
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_dump(document), encoding="utf-8")
        written.append(path)
    shutil.copyfile(source / "LICENSE", target / "LICENSE")
    (target / "README.md").write_text(_readme(documents, source_commit(source)), encoding="utf-8")
    schema_index.cache_clear()
    return [*written, target / "LICENSE", target / "README.md"]


def read_copy(target: Path = COPY) -> dict[str, Any]:
    """The committed copy, file by file, as ``extract`` returns it."""
    return {
        path.relative_to(target).as_posix(): json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(target.glob("*/*.json"))
    }


# -- validation -------------------------------------------------------------------------------------------------------
EXPRESSION_SCHEMA_NAME = "__common_expression"


def _is_expression(branch: Any) -> bool:
    return isinstance(branch, dict) and branch.get("$ref") == EXPRESSION_REF


def _strict(node: Any) -> Any:
    """A copy of a schema in which an object may hold only the properties its schema names.

    Where a schema's ``properties`` sit beside a ``oneOf`` (a resource's ``apiVersion`` and ``type`` beside the
    variants of ``sites/config``), they are moved into every variant, so that each variant names all it allows. A
    ``oneOf`` of a value's schema and the ARM expression becomes "an expression string, or else that schema", so that
    an error names what is wrong with the value rather than "no branch matched", and so that an expression never
    counts twice where the value's schema would accept that string too (ARM evaluates expressions first).
    """
    if isinstance(node, list):
        return [_strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = _shared_into_variants(dict(node))
    branches = node.get("oneOf")
    if isinstance(branches, list) and any(_is_expression(b) for b in branches):
        others = [b for b in branches if not _is_expression(b)]
        node.pop("oneOf")
        value_schema = others[0] if len(others) == 1 else {"oneOf": others}
        node.update({"if": {"$ref": _LOCAL_COMMON + "expression"}, "then": {}, "else": value_schema})
    result: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("properties", "definitions", "patternProperties") and isinstance(value, dict):
            result[key] = {name: _strict(schema) for name, schema in value.items()}
        elif key == "$ref" and isinstance(value, str) and value.startswith(COMMON):
            result[key] = _LOCAL_COMMON + value[len(COMMON) :]
        else:
            result[key] = _strict(value)
    if isinstance(result.get("properties"), dict) and "additionalProperties" not in result:
        result["additionalProperties"] = False
    return result


def _shared_into_variants(node: dict[str, Any]) -> dict[str, Any]:
    shared, branches = node.get("properties"), node.get("oneOf")
    if not (isinstance(shared, dict) and isinstance(branches, list)):
        return node
    required = node.pop("required", [])
    del node["properties"]
    node["oneOf"] = [
        {**b, "properties": {**shared, **b["properties"]}, "required": [*required, *b.get("required", [])]}
        if isinstance(b, dict) and isinstance(b.get("properties"), dict)
        else b
        for b in branches
    ]
    return node


@functools.cache
def _validator(resource_type: str, scope: str, root: Path = COPY) -> jsonschema_rs.Validator:
    relative, section, key = locate(resource_type, scope, root)
    document = json.loads((root / relative).read_text(encoding="utf-8"))
    common = json.loads((root / "common" / "definitions.json").read_text(encoding="utf-8"))["definitions"]
    definitions = {**document.get("definitions", {}), **{f"__common_{n}": d for n, d in common.items()}}
    schema = {**copy.deepcopy(document[section][key]), "definitions": definitions}
    return jsonschema_rs.Draft7Validator(_strict(schema))


def arm_value(value: Any) -> Any:
    """A value as ``bicep build`` writes it: literals as they are, anything else an ARM expression string."""
    if isinstance(value, Expr):
        return f"[{value.text}]"
    if isinstance(value, dict):
        return {str(key): arm_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [arm_value(item) for item in value]
    return value


def _definition(error: Any) -> str:
    path = list(error.schema_path)
    names = [str(path[i + 1]) for i, part in enumerate(path[:-1]) if part == "definitions"]
    return names[-1] if names else "the resource"


def _describe(error: Any) -> list[str]:
    where = "/".join(map(str, error.instance_path)) or "<resource>"
    kind, details = error.kind.name, error.kind.as_dict()
    if kind == "additionalProperties":
        return [
            f"{where}: BCP037 the property {name!r} is not allowed on objects of type {_definition(error)}"
            for name in details["unexpected"]
        ]
    if kind == "enum":
        return [f"{where}: BCP036 {error.instance!r} is not one of {details['options']}"]
    if kind == "type":
        return [f"{where}: BCP036 expected a value of type {details['types']}, got {error.instance!r}"]
    if kind == "required":
        return [f"{where}: BCP035 the required property {details['property']!r} is missing"]
    if kind == "oneOf" and getattr(error.kind, "context", None):
        # No variant matches (sites/config by name, ...): the errors of the closest variant.
        closest = min(error.kind.context, key=len)
        return [message for sub in closest for message in _describe(sub)]
    return [f"{where}: {kind}: {error.message}"]


def _errors(resource_type: str, scope: str, instance: dict[str, Any], root: Path) -> list[Any]:
    full, _ = split_type(resource_type)
    return [
        error
        for error in _validator(resource_type, scope, root).iter_errors(instance)
        if not (
            error.kind.name == "required"
            and not list(error.instance_path)
            and (full.lower(), error.kind.as_dict()["property"]) in SCHEMA_ONLY_REQUIRED
        )
    ]


def schema_errors(resource_type: str, scope: str, arm: dict[str, Any], root: Path = COPY) -> list[str]:
    """What the ARM schema of the type and API version finds wrong with a resource body, as Bicep would name it.

    A child resource's ``name`` is checked in its full form (``account/default/container``), and where only the name
    is wrong, in its last segment too: the schemas put the constraints of the child's own name (a container name's
    3-63 characters) on the property that holds the full name, and Bicep checks them on the name a child declared
    with ``parent`` has.
    """
    instance = arm_value(arm)
    errors = _errors(resource_type, scope, instance, root)
    name = instance.get("name")
    only_name = errors and all(list(error.instance_path)[:1] == ["name"] for error in errors)
    if only_name and isinstance(name, str) and "/" in name and not name.startswith("["):
        short = {**instance, "name": name.rsplit("/", 1)[1]}
        if not _errors(resource_type, scope, short, root):
            return []
    return sorted(message for error in errors for message in _describe(error))


def resource_errors(resource: Resource, root: Path = COPY) -> list[str]:
    """``schema_errors`` of a deployed resource."""
    return schema_errors(resource.type, resource.scope, resource.arm, root)


def main() -> None:
    """``--extract``: regenerate the pruned copy from ../shared/reference/arm-schemas."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--extract", action="store_true", help=f"regenerate {COPY} from {SOURCE}")
    arguments = parser.parse_args()
    if not arguments.extract:
        parser.print_help()
        return
    for path in write_copy():
        print(f"{path.relative_to(ROOT)}  {path.stat().st_size:,} bytes")  # noqa: T201


if __name__ == "__main__":
    main()
