"""The Bicep templates evaluated as a deployment evaluates them, offline.

``Deployment(parameters)`` walks ``main.bicep`` and every module it calls, loops and conditions included, with the
parameter values a deployment gets (``azd_parameters`` reads them from ``main.parameters.json`` as azd does), and
lists every resource the deployment would create as the ARM JSON ``bicep build`` writes for it: ``type``,
``apiVersion``, the full ``name`` and the resource's other properties. Bicep-only syntax is handled as Bicep compiles
it: ``parent`` becomes the prefix of the name (``account/database/container``), ``scope`` and ``dependsOn`` are
properties of the template rather than of the resource and are left out, an ``existing`` resource is a reference and
is not deployed, a loop is one resource per item, and a conditional resource is kept (Bicep type-checks its body
whether or not it deploys; ``Resource.condition`` says whether it would).

Values are computed wherever the template alone decides them: literals, parameters, variables, loop items,
operators and the pure functions (``concat``, ``union``, ``length``, ``range``, ``empty``, ``take``, ...). What only
Azure knows at deployment time (``subscription()``, ``tenant()``, a resource's ``id`` or ``properties``, a module's
outputs) stays an ``Expr`` and is written as an ARM expression string (``[...]``), which every ARM schema accepts in
place of a value, as ARM does: it evaluates expressions before it validates a resource. ``uniqueString`` and
``guid`` are hashes, so they get a stand-in of their shape (13 lowercase base-32 characters; a GUID) and the names
built from them are checked too.

``Deployment.problems`` lists the parameter values that Bicep (a module's parameters) or ARM (the deployment's own)
would refuse: missing, of the wrong type, outside ``@allowed``, ``@minValue``/``@maxValue``, ``@minLength``/
``@maxLength``.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import re
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tree_sitter import Node

from tests.infra.bicep_tree import BicepFile, Declaration, Expr

INFRA = Path(__file__).resolve().parents[2] / "infra" / "bicep"
# What ``bicep build`` leaves out of a resource's body: they are properties of the template (``scope``,
# ``dependsOn``), or become part of the name (``parent``).
BICEP_ONLY_KEYS = frozenset({"parent", "scope", "dependsOn"})
# azd takes these two from the signed-in principal, not from the environment (Azure/azure-dev,
# cli/azd/pkg/infra/provisioning/bicep/bicep_provider.go, evalParamEnvSubst).
AZD_PRINCIPAL_ID = "AZURE_PRINCIPAL_ID"
AZD_PRINCIPAL_TYPE = "AZURE_PRINCIPAL_TYPE"
_ESCAPES = {"\\'": "'", "\\\\": "\\", "\\n": "\n", "\\r": "\r", "\\t": "\t", "\\$": "$"}


class BicepEvaluationError(Exception):
    """The template holds something this evaluator reads differently from Bicep (so it refuses to guess)."""


def _text(node: Node) -> str:
    return (node.text or b"").decode()


def _named(node: Node) -> list[Node]:
    return [child for child in node.named_children if child.type != "comment"]


def unknown(node: Node) -> Expr:
    """A value only the deployment knows: the expression as written."""
    return Expr(node.type, _text(node))


def is_known(value: Any) -> bool:
    """Whether a value holds no ``Expr`` anywhere."""
    if isinstance(value, Expr):
        return False
    if isinstance(value, dict):
        return all(is_known(item) for item in value.values())
    if isinstance(value, list):
        return all(is_known(item) for item in value)
    return True


# -- azd --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AzdEnvironment:
    """What ``azd provision`` substitutes into ``main.parameters.json``.

    ``values`` is the azd environment (``.azure/<name>/.env`` and the process environment); ``principal_id`` and
    ``principal_type`` describe whoever is signed in to azd: ``User``, or ``ServicePrincipal`` when azd signed in
    with a client id (Azure/azure-dev, cli/azd/pkg/infra/provisioning/current_principal_id_provider.go).
    """

    values: Mapping[str, str]
    principal_id: str
    principal_type: str | None  # None: an azd older than 1.17.1, which has no AZURE_PRINCIPAL_TYPE

    def lookup(self, name: str) -> str | None:
        """The value azd substitutes for ``${name}``; None when the variable is not set."""
        if name == AZD_PRINCIPAL_ID:
            return self.principal_id
        if name == AZD_PRINCIPAL_TYPE:
            return self.principal_type
        return self.values.get(name)


def azd_parameters(path: Path, env: AzdEnvironment) -> dict[str, Any]:
    """The parameter values azd passes to the deployment, read from a ``main.parameters.json``.

    As azd does: ``${NAME}`` is replaced by the variable's value (empty when it is not set), and a string parameter
    left empty because a variable is not set is not passed at all, so that the template's default applies
    (bicep_provider.go, loadParameters).
    """
    document = json.loads(path.read_text(encoding="utf-8"))
    result: dict[str, Any] = {}
    for name, parameter in document["parameters"].items():
        value = parameter.get("value")
        if not isinstance(value, str):
            result[name] = value
            continue
        unset = False

        def substitute(match: re.Match[str]) -> str:
            nonlocal unset
            found = env.lookup(match[1])
            unset = unset or found is None
            return found or ""

        replaced = re.sub(r"\$\{(\w+)\}", substitute, value)
        if not (replaced == "" and unset):
            result[name] = replaced
    return result


# -- functions --------------------------------------------------------------------------------------------------------
def _unique_string(*args: Any) -> str:
    """A stand-in for ``uniqueString``: 13 lowercase base-32 characters, deterministic in its arguments."""
    digest = hashlib.sha256(json.dumps([repr(a) for a in args]).encode()).digest()
    return base64.b32encode(digest).decode().lower()[:13]


def _guid(*args: Any) -> str:
    """A stand-in for ``guid``: a GUID, deterministic in its arguments."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, json.dumps([repr(a) for a in args])))


def _union(*items: Any) -> Any:
    if all(isinstance(item, list) for item in items):
        merged: list[Any] = []
        for item in items:
            merged.extend(value for value in item if value not in merged)
        return merged
    result: dict[str, Any] = {}
    for item in items:
        for key, value in item.items():
            both_objects = isinstance(result.get(key), dict) and isinstance(value, dict)
            result[key] = _union(result[key], value) if both_objects else value
    return result


def _concat(*items: Any) -> Any:
    if all(isinstance(item, list) for item in items):
        return [value for item in items for value in item]
    return "".join(_string(item) for item in items)


def _string(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return json.dumps(value, separators=(",", ":"))


def _take(value: Any, count: int) -> Any:
    return value[: max(count, 0)]


# Functions whose result the template alone decides (all arguments known); others stay expressions.
PURE_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "empty": lambda value: value in ("", None) or value == [] or value == {},
    "length": len,
    "concat": _concat,
    "union": _union,
    "range": lambda start, count: list(range(start, start + count)),
    "toLower": lambda value: value.lower(),
    "toUpper": lambda value: value.upper(),
    "take": _take,
    "skip": lambda value, count: value[max(count, 0) :],
    "string": _string,
    "int": int,
    "bool": lambda value: value if isinstance(value, bool) else str(value).lower() == "true",
    "contains": lambda container, item: item in container,
    "startsWith": lambda value, prefix: value.lower().startswith(prefix.lower()),
    "endsWith": lambda value, suffix: value.lower().endswith(suffix.lower()),
    "replace": lambda value, old, new: value.replace(old, new),
    "first": lambda value: value[0],
    "last": lambda value: value[-1],
    "min": min,
    "max": max,
}
# Functions of an array's or object's structure: they need the container, not every item in it, to be known.
STRUCTURAL_FUNCTIONS = frozenset({"empty", "length", "concat", "union", "range", "take", "skip", "first", "last"})
# Hashes: evaluated whatever their arguments (an unknown argument is hashed as its source text).
HASH_FUNCTIONS: dict[str, Callable[..., str]] = {"uniqueString": _unique_string, "guid": _guid}


def _integer_divide(left: int, right: int) -> int:
    quotient = abs(left) // abs(right)
    return quotient if (left >= 0) == (right >= 0) else -quotient


BINARY_OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": _integer_divide,
    "%": lambda a, b: a - b * _integer_divide(a, b),
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "=~": lambda a, b: str(a).lower() == str(b).lower(),
    "!~": lambda a, b: str(a).lower() != str(b).lower(),
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


# -- one file with its parameter values ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Resource:
    """A resource the deployment creates."""

    module: str  # the module path: main, main/db, ...
    file: str  # the file it is declared in, relative to the folder of main.bicep
    symbol: str
    index: int | None  # the loop index, for a looped resource
    scope: str  # the target scope of its file: resourceGroup, subscription, ...
    type: str  # Microsoft.X/y@api-version
    condition: Any  # True, False, or an Expr the deployment decides
    arm: dict[str, Any]  # the ARM JSON of the resource (values that are not literals: Expr)
    declaration: Declaration = field(compare=False, repr=False)

    @property
    def label(self) -> str:
        """``file:symbol[index]``."""
        return f"{self.file}:{self.symbol}" + ("" if self.index is None else f"[{self.index}]")


@dataclass(frozen=True)
class _Loop:
    item: str | None
    index: str | None
    source: Node
    body: Node

    def bind(self, item: Any, position: int) -> dict[str, Any]:
        """The loop variables of one iteration."""
        return {**({self.item: item} if self.item else {}), **({self.index: position} if self.index else {})}


def _loop(node: Node) -> _Loop:
    """The parts of a ``[for ... in source: body]`` node."""
    item = index = None
    source: Node | None = None
    after_in = False
    for child in node.children:
        if child.type == "for_loop_parameters":
            named = _named(child)
            item = _text(named[0])
            index = _text(named[1]) if len(named) > 1 else None
        elif child.type == "in":
            after_in = True
        elif after_in and source is None and child.is_named and child.type != "comment":
            source = child
    initializer = node.child_by_field_name("initializer")
    if initializer is not None:
        item = _text(initializer)
    body = node.child_by_field_name("body")
    if source is None or body is None:
        raise BicepEvaluationError(f"unreadable loop: {_text(node)[:80]}")
    return _Loop(item, index, source, body)


class Scope:
    """One Bicep file deployed with given parameter values: evaluates its parameters, variables and resources."""

    def __init__(self, file: BicepFile, module: str, given: Mapping[str, Any], root: Path = INFRA) -> None:
        self.file = file
        self.root = root
        self.module = module
        self.given = dict(given)
        self._values: dict[str, Any] = {}
        self._evaluating: set[str] = set()
        match = re.search(r"^targetScope\s*=\s*'(\w+)'", file.source.decode(), re.MULTILINE)
        self.target_scope = match[1] if match else "resourceGroup"
        self._handlers: dict[str, Callable[[Node, Mapping[str, Any]], Any]] = {
            "object": self._object,
            "array": lambda node, local: [self.evaluate(item, local) for item in _named(node)],
            "for_statement": self._for,
            "string": self._string,
            "number": lambda node, local: int(_text(node)),
            "boolean": lambda node, local: _text(node) == "true",
            "null": lambda node, local: None,
            "identifier": self._identifier,
            "member_expression": self._member,
            "subscript_expression": self._subscript,
            "call_expression": self._call,
            "binary_expression": self._binary,
            "unary_expression": self._unary,
            "ternary_expression": self._ternary,
            "parenthesized_expression": lambda node, local: self.evaluate(_named(node)[0], local),
        }

    @property
    def path(self) -> str:
        """The file, relative to the folder of the deployment's main file."""
        return self.file.path.resolve().relative_to(self.root).as_posix()

    # values of names
    def value(self, name: str) -> Any:
        """The value of a parameter or variable of this file."""
        if name in self._values:
            return self._values[name]
        if name in self._evaluating:
            raise BicepEvaluationError(f"{self.path}: {name} refers to itself")
        self._evaluating.add(name)
        try:
            declaration = self.file.params.get(name) or self.file.variables[name]
            if declaration.kind == "param" and name in self.given:
                result = self.given[name]
            elif declaration.value_node is None:
                result = Expr("identifier", name)  # a parameter without a value: reported by parameter_problems
            else:
                result = self.evaluate(declaration.value_node, {})
        finally:
            self._evaluating.discard(name)
        self._values[name] = result
        return result

    # expressions
    def evaluate(self, node: Node, local: Mapping[str, Any]) -> Any:
        """The value of an expression; an ``Expr`` where the deployment decides it."""
        handler = self._handlers.get(node.type)
        return unknown(node) if handler is None else handler(node, local)

    def _object(self, node: Node, local: Mapping[str, Any]) -> Any:
        result: dict[str, Any] = {}
        for prop in _named(node):
            if prop.type != "object_property":
                return unknown(node)
            key_node, value_node = _named(prop)[0], _named(prop)[-1]
            key = self.evaluate(key_node, local) if key_node.type == "string" else _text(key_node)
            result[f"[{key.text}]" if isinstance(key, Expr) else str(key)] = self.evaluate(value_node, local)
        return result

    def _for(self, node: Node, local: Mapping[str, Any]) -> Any:
        loop = _loop(node)
        items = self.evaluate(loop.source, local)
        if not isinstance(items, list):
            return unknown(node)
        return [self.evaluate(loop.body, {**local, **loop.bind(item, i)}) for i, item in enumerate(items)]

    def _string(self, node: Node, local: Mapping[str, Any]) -> Any:
        parts: list[str] = []
        for part in node.children[1:-1]:  # between the quotes
            if part.type == "interpolation":
                value = self.evaluate(_named(part)[0], local)
                if not is_known(value):
                    return unknown(node)
                parts.append(_string(value))
            elif part.type == "escape_sequence":
                parts.append(_ESCAPES.get(_text(part), _text(part)))
            else:
                parts.append(_text(part))
        return "".join(parts)

    def _identifier(self, node: Node, local: Mapping[str, Any]) -> Any:
        name = _text(node)
        if name in local:
            return local[name]
        if name in self.file.params or name in self.file.variables:
            return self.value(name)
        return unknown(node)  # a resource or module symbol, or a namespace

    def _member(self, node: Node, local: Mapping[str, Any]) -> Any:
        target = node.child_by_field_name("object")
        prop = node.child_by_field_name("property")
        if target is None or prop is None:
            return unknown(node)
        self._refuse_misparse(node, target)
        name = _text(prop)
        resource = self.file.resources.get(_text(target)) if target.type == "identifier" else None
        if resource is not None and _text(target) not in local and name == "name" and not resource.loop:
            return self.resource_body(resource, {})["name"]
        value = self.evaluate(target, local)
        if isinstance(value, dict) and name in value:
            return value[name]
        return unknown(node)

    def _refuse_misparse(self, node: Node, target: Node | None) -> None:
        """tree-sitter-bicep reads ``a && b.c`` as ``(a && b).c`` (and ``a ? b : c.d``, ``a || b[0]`` alike), which
        Bicep never does: refuse to evaluate it, rather than evaluate something else (parenthesise ``(b.c)``)."""
        if target is not None and target.type in ("binary_expression", "unary_expression", "ternary_expression"):
            raise BicepEvaluationError(f"{self.path}: tree-sitter-bicep misreads {_text(node)!r}; parenthesise it")

    def _subscript(self, node: Node, local: Mapping[str, Any]) -> Any:
        target = node.child_by_field_name("object")
        index = node.child_by_field_name("index")
        if target is None or index is None:
            return unknown(node)
        self._refuse_misparse(node, target)
        value, key = self.evaluate(target, local), self.evaluate(index, local)
        if isinstance(value, list) and isinstance(key, int) and not isinstance(key, bool) and 0 <= key < len(value):
            return value[key]
        if isinstance(value, dict) and isinstance(key, str) and key in value:
            return value[key]
        return unknown(node)

    def _call(self, node: Node, local: Mapping[str, Any]) -> Any:
        function = node.child_by_field_name("function")
        arguments = node.child_by_field_name("arguments")
        if function is None:
            return unknown(node)
        if function.type == "member_expression":
            self._refuse_misparse(node, function.child_by_field_name("object"))
        name = _text(function).removeprefix("sys.")
        values = [self.evaluate(argument, local) for argument in _named(arguments)] if arguments else []
        if name in HASH_FUNCTIONS:
            return HASH_FUNCTIONS[name](*[value.text if isinstance(value, Expr) else value for value in values])
        known = (lambda v: not isinstance(v, Expr)) if name in STRUCTURAL_FUNCTIONS else is_known
        if name in PURE_FUNCTIONS and all(known(value) for value in values):
            return PURE_FUNCTIONS[name](*values)
        return unknown(node)

    def _binary(self, node: Node, local: Mapping[str, Any]) -> Any:
        left_node, right_node = node.child_by_field_name("left"), node.child_by_field_name("right")
        operator = node.child_by_field_name("operator")
        if left_node is None or right_node is None or operator is None:
            return unknown(node)
        symbol, left = _text(operator), self.evaluate(left_node, local)
        if symbol in ("&&", "||") and isinstance(left, bool):
            if left is (symbol == "||"):  # decided by the left side, as Bicep short-circuits
                return left
            right = self.evaluate(right_node, local)
            return right if isinstance(right, bool) else unknown(node)
        if symbol == "??":
            return self.evaluate(right_node, local) if left is None else left
        right = self.evaluate(right_node, local)
        if symbol in BINARY_OPERATORS and is_known(left) and is_known(right):
            return BINARY_OPERATORS[symbol](left, right)
        return unknown(node)

    def _unary(self, node: Node, local: Mapping[str, Any]) -> Any:
        operator, argument = node.child_by_field_name("operator"), node.child_by_field_name("argument")
        if operator is None or argument is None:
            return unknown(node)
        value = self.evaluate(argument, local)
        if _text(operator) == "!" and isinstance(value, bool):
            return not value
        if _text(operator) == "-" and isinstance(value, int) and not isinstance(value, bool):
            return -value
        return unknown(node)

    def _ternary(self, node: Node, local: Mapping[str, Any]) -> Any:
        condition = node.child_by_field_name("condition")
        consequence, alternative = node.child_by_field_name("consequence"), node.child_by_field_name("alternative")
        if condition is None or consequence is None or alternative is None:
            return unknown(node)
        test = self.evaluate(condition, local)
        if not isinstance(test, bool):
            return unknown(node)
        return self.evaluate(consequence if test else alternative, local)

    # resources and modules
    def instances(self, declaration: Declaration) -> Iterator[tuple[int | None, dict[str, Any], Any, Node]]:
        """Each instance of a resource or module: (loop index, loop variables, condition, body object node)."""
        node = declaration.value_node
        if node is None:
            raise BicepEvaluationError(f"{self.path}: {declaration.name} has no body")
        if node.type != "for_statement":
            condition, body = self._condition(node, {})
            yield None, {}, condition, body
            return
        loop = _loop(node)
        items = self.evaluate(loop.source, {})
        if not isinstance(items, list):  # decided at deployment: one instance with unknown loop variables
            items, indexed = [Expr("identifier", loop.item or "item")], False
        else:
            indexed = True
        for position, item in enumerate(items):
            local = loop.bind(item, position)
            condition, body = self._condition(loop.body, local)
            yield (position if indexed else None), local, condition, body

    def _condition(self, node: Node, local: Mapping[str, Any]) -> tuple[Any, Node]:
        if node.type != "if_statement":
            return True, node
        test = next(child for child in _named(node) if child.type == "parenthesized_expression")
        body = next(child for child in _named(node) if child.type == "object")
        return self.evaluate(test, local), body

    def resource_body(self, declaration: Declaration, local: Mapping[str, Any], body: Node | None = None) -> Any:
        """The evaluated body of a resource (its first instance unless ``body`` is given)."""
        if body is None:
            _, local, _, body = next(self.instances(declaration))
        value = self.evaluate(body, local)
        if not isinstance(value, dict):
            raise BicepEvaluationError(f"{self.path}: {declaration.name} has no literal body")
        return value

    def full_name(self, declaration: Declaration, body: Mapping[str, Any]) -> Any:
        """The resource's name as ARM knows it: ``parent/child`` for a child declared with ``parent``."""
        name = body["name"]
        parent = body.get("parent")
        if parent is None:
            return name
        parent_declaration = self.file.resources.get(parent.text) if isinstance(parent, Expr) else None
        if parent_declaration is None:
            raise BicepEvaluationError(f"{self.path}: {declaration.name} has a parent this file does not declare")
        parent_name = self.full_name(parent_declaration, self.resource_body(parent_declaration, {}))
        if is_known(parent_name) and is_known(name):
            return f"{parent_name}/{name}"
        return Expr("parent_name", f"{_expression_text(parent_name)}/{_expression_text(name)}")

    def resources(self) -> Iterator[Resource]:
        """Every resource this file deploys (``existing`` ones are references, not deployed)."""
        for declaration in self.file.resources.values():
            if declaration.existing:
                continue
            for index, local, condition, node in self.instances(declaration):
                body = self.resource_body(declaration, local, node)
                full_type, api_version = str(declaration.type).split("@", 1)
                arm = {"type": full_type, "apiVersion": api_version, "name": self.full_name(declaration, body)}
                arm.update({key: value for key, value in body.items() if key not in BICEP_ONLY_KEYS | {"name"}})
                yield Resource(
                    module=self.module,
                    file=self.path,
                    symbol=declaration.name,
                    index=index,
                    scope=self.target_scope,
                    type=str(declaration.type),
                    condition=condition,
                    arm=arm,
                    declaration=declaration,
                )


def _expression_text(value: Any) -> str:
    return value.text if isinstance(value, Expr) else str(value)


# -- parameters -------------------------------------------------------------------------------------------------------
_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda value: isinstance(value, str),
    "int": lambda value: isinstance(value, int) and not isinstance(value, bool),
    "bool": lambda value: isinstance(value, bool),
    "object": lambda value: isinstance(value, dict),
    "array": lambda value: isinstance(value, list),
}


def _type_problem(declared: str, value: Any) -> str | None:
    if declared.endswith("[]"):
        item_type = declared[:-2]
        if not isinstance(value, list):
            return f"expects {declared}, got {_json_type(value)}"
        wrong = [item for item in value if is_known(item) and not _TYPES.get(item_type, lambda _: True)(item)]
        return f"expects {declared}, got items {wrong!r}" if wrong else None
    check = _TYPES.get(declared)
    if check is not None and not check(value):
        return f"expects {declared}, got {_json_type(value)} {value!r}"
    return None


def _json_type(value: Any) -> str:
    return {bool: "bool", int: "int", str: "string", dict: "object", list: "array"}.get(type(value), "null")


def _decorator_problems(decorators: Mapping[str, list[Any]], value: Any) -> Iterator[str]:
    allowed = decorators.get("allowed")
    if allowed and value not in allowed[0]:
        yield f"{value!r} is not one of the allowed values {allowed[0]!r}"
    if "minValue" in decorators and isinstance(value, int) and value < decorators["minValue"][0]:
        yield f"{value!r} is below @minValue({decorators['minValue'][0]})"
    if "maxValue" in decorators and isinstance(value, int) and value > decorators["maxValue"][0]:
        yield f"{value!r} is above @maxValue({decorators['maxValue'][0]})"
    if "minLength" in decorators and isinstance(value, str | list) and len(value) < decorators["minLength"][0]:
        yield f"{value!r} is shorter than @minLength({decorators['minLength'][0]})"
    if "maxLength" in decorators and isinstance(value, str | list) and len(value) > decorators["maxLength"][0]:
        yield f"{value!r} is longer than @maxLength({decorators['maxLength'][0]})"


def parameter_problems(scope: Scope) -> list[str]:
    """The parameter values of a file that Bicep or ARM would refuse (only values the template decides)."""
    problems = []
    for name, declaration in scope.file.params.items():
        where = f"{scope.path}: param {name}"
        if name not in scope.given and not declaration.has_default:
            problems.append(f"{where}: BCP035 required but not given")
            continue
        value = scope.value(name)
        if not is_known(value):
            continue
        declared = (declaration.type or "").rstrip("?")
        if value is None and (declaration.type or "").endswith("?"):
            continue
        type_problem = _type_problem(declared, value)
        if type_problem:
            problems.append(f"{where}: BCP036 {type_problem}")
            continue
        problems.extend(f"{where}: BCP036 {problem}" for problem in _decorator_problems(declaration.decorators, value))
    return problems


# -- the whole deployment ---------------------------------------------------------------------------------------------
class Deployment:
    """``main.bicep`` deployed with the given parameter values, every module included."""

    def __init__(self, parameters: Mapping[str, Any], main: Path = INFRA / "main.bicep") -> None:
        self.root = main.resolve().parent
        self.scopes: list[Scope] = []
        self.resources: list[Resource] = []
        self._add(Scope(BicepFile(main), "main", parameters, self.root))

    def _add(self, scope: Scope) -> None:
        self.scopes.append(scope)
        unknown_params = set(scope.given) - set(scope.file.params)
        if unknown_params:
            raise BicepEvaluationError(f"{scope.path}: no such parameters {sorted(unknown_params)}")
        self.resources.extend(scope.resources())
        for declaration in scope.file.modules.values():
            target = (scope.file.path.parent / str(declaration.type)).resolve()
            for index, local, _, body in scope.instances(declaration):
                arguments = scope.evaluate(body, local).get("params", {})
                suffix = "" if index is None else f"[{index}]"
                self._add(Scope(BicepFile(target), f"{scope.module}/{declaration.name}{suffix}", arguments, self.root))

    @property
    def problems(self) -> list[str]:
        """Parameter values that Bicep or ARM would refuse, in every file deployed."""
        return [problem for scope in self.scopes for problem in parameter_problems(scope)]

    def scope(self, module: str) -> Scope:
        """The scope of a module path (``main``, ``main/db``, ...)."""
        return next(scope for scope in self.scopes if scope.module == module)

    def of_type(self, resource_type: str) -> list[Resource]:
        """Deployed resources of a type (without API version), in declaration order."""
        return [r for r in self.resources if r.type.split("@", 1)[0].lower() == resource_type.lower()]


# -- the deployments the tests check ----------------------------------------------------------------------------------
# A developer's `azd up` (signed in as a user; nothing but the environment's name and region set) and a pipeline's
# (signed in as a service principal, with App Service Authentication on and Azure OpenAI in another region).
SCENARIOS: dict[str, AzdEnvironment] = {
    "developer": AzdEnvironment(
        {"AZURE_ENV_NAME": "dev", "AZURE_LOCATION": "eastus2"},
        principal_id="6f1c2a7e-3b8d-4c55-9e0a-1d2b3c4d5e6f",
        principal_type="User",
    ),
    "pipeline": AzdEnvironment(
        {
            "AZURE_ENV_NAME": "ci",
            "AZURE_LOCATION": "swedencentral",
            "AZURE_OPENAI_LOCATION": "eastus2",
            "EASY_AUTH_CLIENT_ID": "11111111-2222-4333-8444-555555555555",
        },
        principal_id="0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
        principal_type="ServicePrincipal",
    ),
}


@functools.cache
def scenario(name: str) -> Deployment:
    """The deployment azd makes in one of ``SCENARIOS``."""
    return Deployment(azd_parameters(INFRA / "main.parameters.json", SCENARIOS[name]))
