"""A small reader of Bicep files over tree-sitter-bicep's concrete syntax tree, for the offline infra checks.

There is no Bicep CLI on these machines (``bicep build`` downloads its binary), so the checks work on the parse
tree: declarations (``param``, ``var``, ``resource``, ``module``, ``output``) with their decorators, and literal
values turned into Python (objects, arrays, strings without interpolation, numbers, booleans, null). Anything else
(identifiers, member access, calls, interpolated strings, ternaries) stays an ``Expr`` holding its source text, and
``resolve`` replaces identifiers it knows (variables of the file, parameter values given by the caller).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tree_sitter_bicep
from tree_sitter import Language, Node, Parser, Tree

_ESCAPES = {"\\'": "'", "\\\\": "\\", "\\n": "\n", "\\r": "\r", "\\t": "\t", "\\$": "$"}
_DECLARATION_KINDS = {
    "parameter_declaration": "param",
    "variable_declaration": "var",
    "resource_declaration": "resource",
    "module_declaration": "module",
    "output_declaration": "output",
}


@dataclass(frozen=True)
class Expr:
    """An expression that is not a literal: ``kind`` is its node type, ``text`` its source."""

    kind: str
    text: str

    @property
    def identifier(self) -> str | None:
        """The name, when the expression is a bare identifier."""
        return self.text if self.kind == "identifier" else None


@dataclass
class Declaration:
    """One top-level declaration of a Bicep file."""

    kind: str  # param | var | resource | module | output
    name: str
    node: Node
    type: str | None = None  # resource type, module path, or the param/output type
    value: Any = None  # param default, var value, output value, or the body object of a resource/module
    decorators: dict[str, list[Any]] = field(default_factory=dict)
    existing: bool = False
    loop: bool = False
    condition: bool = False
    loop_source: str | None = None  # the expression a looped resource/module iterates over
    condition_source: str | None = None  # the condition of a conditional resource/module (``if (...)``), unwrapped
    value_node: Node | None = None  # the node after ``=`` (a resource/module: its ``for``, ``if`` or object as written)

    @property
    def has_default(self) -> bool:
        """Whether a param has a default value (or is nullable, which makes it optional too)."""
        return self.value is not None or (self.type or "").endswith("?")


@functools.cache
def _parser() -> Parser:
    return Parser(Language(tree_sitter_bicep.language()))


def parse(source: bytes) -> Tree:
    """The concrete syntax tree of Bicep source."""
    return _parser().parse(source)


def syntax_problems(tree: Tree) -> list[str]:
    """Every ERROR or missing node of the tree, as ``line:column kind text``."""
    problems: list[str] = []

    def walk(node: Node) -> None:
        if node.type == "ERROR" or node.is_missing:
            line, column = node.start_point
            kind = "missing " + node.type if node.is_missing else "error"
            problems.append(f"{line + 1}:{column + 1} {kind} {_text(node)[:60]!r}")
        for child in node.children:
            walk(child)

    walk(tree.root_node)
    return problems


def _text(node: Node) -> str:
    return (node.text or b"").decode()


def _named(node: Node) -> list[Node]:
    return [c for c in node.named_children if c.type != "comment"]


def value_of(node: Node) -> Any:
    """The Python value of a literal node; an ``Expr`` for anything that is not a literal."""
    kind = node.type
    if kind == "object":
        result: dict[str, Any] = {}
        for prop in _named(node):
            if prop.type != "object_property":
                return Expr(kind, _text(node))
            key_node, value_node = _named(prop)[0], _named(prop)[-1]
            key = value_of(key_node) if key_node.type == "string" else _text(key_node)
            result[str(key)] = value_of(value_node)
        return result
    if kind == "array":
        return [value_of(item) for item in _named(node)]
    if kind == "string":
        parts = node.children[1:-1]  # between the quotes
        if any(p.type not in ("string_content", "escape_sequence") for p in parts):
            return Expr("interpolated_string", _text(node))
        return "".join(_ESCAPES.get(_text(p), _text(p)) if p.type == "escape_sequence" else _text(p) for p in parts)
    if kind == "number":
        return int(_text(node))
    if kind == "boolean":
        return _text(node) == "true"
    if kind == "null":
        return None
    return Expr(kind, _text(node))


def _body(node: Node) -> tuple[Node, str | None, str | None]:
    """The object of a resource/module body, what it loops over (if it does), and its condition (if it has one)."""
    loop_source: str | None = None
    condition: str | None = None
    while node.type in ("for_statement", "if_statement"):
        if node.type == "for_statement":
            after_in = False
            for child in node.children:
                if child.type == "in":
                    after_in = True
                elif after_in and child.is_named and child.type != "comment":
                    loop_source = _text(child)
                    break
        if node.type == "if_statement":
            test = next(c for c in _named(node) if c.type == "parenthesized_expression")
            condition = _text(test).strip()[1:-1].strip()
        node = [c for c in _named(node) if c.type in ("object", "for_statement", "if_statement")][-1]
    return node, loop_source, condition


def _decorators(node: Node) -> dict[str, list[Any]]:
    previous = node.prev_named_sibling
    while previous is not None and previous.type == "comment":
        previous = previous.prev_named_sibling
    if previous is None or previous.type != "decorators":
        return {}
    result: dict[str, list[Any]] = {}
    for decorator in _named(previous):
        call = _named(decorator)[0]
        if call.type == "call_expression":
            name = _text(call.child_by_field_name("function") or call)
            arguments = call.child_by_field_name("arguments")
            result[name] = [value_of(a) for a in _named(arguments)] if arguments else []
        else:
            result[_text(call)] = []
    return result


def _declaration(node: Node) -> Declaration:
    kind = _DECLARATION_KINDS[node.type]
    children = _named(node)
    decl = Declaration(kind=kind, name=_text(children[0]), node=node, decorators=_decorators(node))
    after_equals = False
    for child in node.children:
        if child.type == "=":
            after_equals = True
        elif child.type == "existing":
            decl.existing = True
        elif not after_equals and child.type in ("string", "type") and child is not children[0]:
            decl.type = value_of(child) if child.type == "string" else _text(child)
        elif after_equals and child.is_named and child.type != "comment":
            decl.value_node = child
            if kind in ("resource", "module"):
                body, decl.loop_source, decl.condition_source = _body(child)
                decl.loop = decl.loop_source is not None
                decl.condition = decl.condition_source is not None
                decl.value = value_of(body)
            else:
                decl.value = value_of(child)
    return decl


class BicepFile:
    """A parsed Bicep file and its top-level declarations."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.source = path.read_bytes()
        self.tree = parse(self.source)
        self.declarations = [
            _declaration(node) for node in self.tree.root_node.named_children if node.type in _DECLARATION_KINDS
        ]

    def __repr__(self) -> str:
        return f"BicepFile({self.path.name})"

    def of_kind(self, kind: str) -> dict[str, Declaration]:
        """Declarations of one kind, by symbolic name."""
        return {d.name: d for d in self.declarations if d.kind == kind}

    @property
    def params(self) -> dict[str, Declaration]:
        """``param`` declarations."""
        return self.of_kind("param")

    @property
    def variables(self) -> dict[str, Declaration]:
        """``var`` declarations."""
        return self.of_kind("var")

    @property
    def resources(self) -> dict[str, Declaration]:
        """``resource`` declarations (new and ``existing``)."""
        return self.of_kind("resource")

    @property
    def modules(self) -> dict[str, Declaration]:
        """``module`` declarations."""
        return self.of_kind("module")

    @property
    def outputs(self) -> dict[str, Declaration]:
        """``output`` declarations."""
        return self.of_kind("output")

    def resources_of_type(self, resource_type: str) -> list[Declaration]:
        """Resources (not ``existing`` references) whose type, without the API version, is ``resource_type``."""
        return [
            d
            for d in self.resources.values()
            if not d.existing and str(d.type).split("@", 1)[0].lower() == resource_type.lower()
        ]

    def nodes(self, kind: str) -> Iterator[Node]:
        """Every node of a type, anywhere in the file."""
        stack = [self.tree.root_node]
        while stack:
            node = stack.pop()
            if node.type == kind:
                yield node
            stack.extend(reversed(node.children))

    def resolve(self, value: Any, params: Mapping[str, Any] | None = None) -> Any:
        """``value`` with references to this file's variables (and to ``params``) replaced by their values.

        Resolves bare identifiers, ``name.property`` of a literal object, and strings whose interpolations are all
        such references to literal strings or numbers; anything else stays an ``Expr``.
        """
        known: dict[str, Any] = {name: d.value for name, d in self.variables.items()}
        known.update(params or {})

        def reference(text: str) -> Any:
            match = re.fullmatch(r"(\w+)(?:\.(\w+))?", text.strip())
            if match is None or match[1] not in known:
                return None
            target = walk(known[match[1]])
            if match[2] is None:
                return target
            return target.get(match[2]) if isinstance(target, dict) else None

        def walk(item: Any) -> Any:
            if isinstance(item, dict):
                return {k: walk(v) for k, v in item.items()}
            if isinstance(item, list):
                return [walk(v) for v in item]
            if isinstance(item, Expr) and item.kind in ("identifier", "member_expression"):
                resolved = reference(item.text)
                return item if resolved is None else resolved
            if isinstance(item, Expr) and item.kind == "interpolated_string":
                parts = re.split(r"\$\{([^{}]*)\}", item.text[1:-1])
                for i in range(1, len(parts), 2):
                    resolved = reference(parts[i])
                    if not isinstance(resolved, str | int) or isinstance(resolved, bool):
                        return item
                    parts[i] = str(resolved)
                return "".join(parts)
            return item

        return walk(value)
