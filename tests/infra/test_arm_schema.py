"""Every resource the deployment creates, checked against ARM's JSON schema of its type and API version, offline.

``bicep_eval`` evaluates ``main.bicep`` and every module with the parameters azd passes (a developer's ``azd up`` and
a pipeline's, ``SCENARIOS``), loops and conditions included, into the ARM JSON of each resource; ``arm_schema``
validates it against the committed pruned copy of Azure/azure-resource-manager-schemas in ``tests/infra/
arm_schemas``: a property the API version does not define is an error (Bicep's BCP037), and so is a value of the
wrong type or outside its enum (BCP036). Nothing here needs ``../shared`` or the network, so ``make test`` runs it in
any clone; where the full offline copy is present, a test checks that the committed copy is exactly its extraction.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.infra.arm_schema import (
    COPY,
    SCHEMA_ONLY_REQUIRED,
    SOURCE,
    extract,
    locate,
    read_copy,
    resource_errors,
    schema_errors,
    schema_index,
    source_commit,
    used_types,
)
from tests.infra.bicep_eval import (
    INFRA,
    SCENARIOS,
    AzdEnvironment,
    BicepEvaluationError,
    Deployment,
    Resource,
    azd_parameters,
    scenario,
)
from tests.infra.bicep_tree import BicepFile, Expr

needs_source = pytest.mark.skipif(
    not (SOURCE / "README.md").is_file(), reason=f"the full offline copy of the ARM schemas is not at {SOURCE}"
)
DEPLOYED = [(name, resource) for name in SCENARIOS for resource in scenario(name).resources]
CONTAINERS = "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers"


def only(items: list[Any]) -> Any:
    assert len(items) == 1, items
    return items[0]


def changed(arm: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of a resource body with ``value`` at ``path`` (``properties/resource/...``)."""
    result = copy.deepcopy(arm)
    *parents, last = path.split("/")
    target = result
    for key in parents:
        target = target[key]
    target[last] = value
    return result


def errors_of(resource: Resource, arm: dict[str, Any]) -> list[str]:
    return schema_errors(resource.type, resource.scope, arm)


def deployment_of(env: AzdEnvironment) -> Deployment:
    return Deployment(azd_parameters(INFRA / "main.parameters.json", env))


# -- the project's templates ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "resource"), DEPLOYED, ids=[f"{n}-{r.label}" for n, r in DEPLOYED])
def test_every_deployed_resource_is_valid_for_its_api_version(name: str, resource: Resource):
    assert resource_errors(resource) == []


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_every_module_loop_and_parameter_is_evaluated_and_accepted(name: str):
    deployment = scenario(name)
    modules = {"identity", "monitoring", "storage", "db", "openai", "rbac", "api"}
    assert {s.module for s in deployment.scopes} == {"main", *(f"main/{m}" for m in modules)}
    # Every resource a file declares (not an `existing` reference) is deployed, a loop once per item.
    declared = {
        (scope.path, d.name) for scope in deployment.scopes for d in scope.file.resources.values() if not d.existing
    }
    assert {(r.file, r.symbol) for r in deployment.resources} == declared
    counts = {(r.file, r.symbol): 0 for r in deployment.resources}
    for r in deployment.resources:
        counts[(r.file, r.symbol)] += 1
    principals = 2  # the app's identity and whoever runs azd
    assert counts[("app/db.bicep", "containers")] == 3
    assert counts[("app/openai.bicep", "modelDeployments")] == 2
    assert counts[("app/rbac.bicep", "storageRoles")] == 3 * principals
    assert counts[("app/rbac.bicep", "cosmosRoles")] == principals
    # Loops produce concrete names (no two resources share one), parameters are values the templates accept.
    names = [json.dumps(r.arm["name"], default=str) for r in deployment.resources]
    assert len(names) == len(set(names))
    assert deployment.problems == []


def test_the_cosmos_api_version_defines_every_indexing_policy_the_containers_use():
    container = scenario("developer").of_type(CONTAINERS)[0]
    relative, _, _ = locate(container.type, container.scope)
    definitions = json.loads((COPY / relative).read_text(encoding="utf-8"))["definitions"]
    policy = container.arm["properties"]["resource"]["indexingPolicy"]
    assert "fullTextIndexes" in policy
    assert set(policy) <= set(definitions["IndexingPolicy"]["properties"])
    assert {"vectorEmbeddingPolicy", "fullTextPolicy"} <= set(definitions["SqlContainerResource"]["properties"])


@needs_source
def test_the_previous_cosmos_api_version_would_have_been_refused():
    # 2025-04-15, the version the containers used before: its IndexingPolicy has no fullTextIndexes.
    container = scenario("developer").of_type(CONTAINERS)[0]
    older = {**container.arm, "apiVersion": "2025-04-15"}
    errors = schema_errors(f"{CONTAINERS}@2025-04-15", container.scope, older, root=SOURCE)
    assert errors == [
        "properties/resource/indexingPolicy: BCP037 the property 'fullTextIndexes' is not allowed on objects of "
        "type IndexingPolicy"
    ]


# -- the check catches mistakes ---------------------------------------------------------------------------------------
def test_an_unknown_property_is_an_error_as_bicep_reports_bcp037():
    container = scenario("developer").of_type(CONTAINERS)[0]
    typo = changed(container.arm, "properties/resource/indexingPolicy/fullTextIndex", [{"path": "/text"}])
    assert errors_of(container, typo) == [
        "properties/resource/indexingPolicy: BCP037 the property 'fullTextIndex' is not allowed on objects of type "
        "IndexingPolicy"
    ]
    # At the top of a resource too, and whatever the value (an expression included).
    site = only(scenario("developer").of_type("Microsoft.Web/sites"))
    assert errors_of(site, {**site.arm, "siteConfig": Expr("identifier", "config")}) == [
        "<resource>: BCP037 the property 'siteConfig' is not allowed on objects of type the resource"
    ]


def test_a_wrong_enum_value_or_type_is_an_error_as_bicep_reports_bcp036():
    container = scenario("developer").of_type(CONTAINERS)[0]
    assert errors_of(container, changed(container.arm, "properties/resource/indexingPolicy/indexingMode", "eager")) == [
        "properties/resource/indexingPolicy/indexingMode: BCP036 'eager' is not one of ['consistent', 'lazy', 'none']"
    ]
    assert errors_of(container, changed(container.arm, "properties/resource/indexingPolicy/automatic", "yes")) == [
        "properties/resource/indexingPolicy/automatic: BCP036 expected a value of type ['boolean'], got 'yes'"
    ]
    auth = only(scenario("pipeline").of_type("Microsoft.Web/sites/config")[1:])
    action = changed(auth.arm, "properties/globalValidation/unauthenticatedClientAction", "Return402")
    errors = errors_of(auth, action)
    assert len(errors) == 1 and errors[0].startswith(
        "properties/globalValidation/unauthenticatedClientAction: BCP036 'Return402' is not one of"
    )
    storage = only(scenario("developer").of_type("Microsoft.Storage/storageAccounts"))
    assert errors_of(storage, changed(storage.arm, "properties/minimumTlsVersion", "TLS1_4")) == [
        "properties/minimumTlsVersion: BCP036 'TLS1_4' is not one of ['TLS1_0', 'TLS1_1', 'TLS1_2', 'TLS1_3']"
    ]


def test_an_expression_stands_for_any_value_as_arm_evaluates_it_before_validating():
    container = scenario("developer").of_type(CONTAINERS)[0]
    mode = Expr("identifier", "indexingMode")
    assert errors_of(container, changed(container.arm, "properties/resource/indexingPolicy/indexingMode", mode)) == []


def test_a_template_with_mistakes_fails_from_bicep_to_schema(tmp_path: Path):
    (tmp_path / "main.bicep").write_text(
        """
param location string = 'eastus2'
@allowed(['Standard_LRS', 'Standard_ZRS'])
param skuName string = 'Standard_LRS'
var names = ['one', 'two']

resource accounts 'Microsoft.Storage/storageAccounts@2023-05-01' = [for name in names: {
  name: 'st${name}'
  location: location
  kind: 'StorageV2'
  sku: { name: skuName }
  properties: {
    minimumTlsVersion: 'TLS1_2'
    sharedKeyAccess: false
    accessTier: name == 'two' ? 'Warm' : 'Hot'
  }
}]
""",
        encoding="utf-8",
    )
    deployment = Deployment({"skuName": "Premium_LRS"}, main=tmp_path / "main.bicep")
    assert deployment.problems == [
        "main.bicep: param skuName: BCP036 'Premium_LRS' is not one of the allowed values "
        "['Standard_LRS', 'Standard_ZRS']"
    ]
    first, second = deployment.resources
    assert (first.arm["name"], second.arm["name"]) == ("stone", "sttwo")
    unknown = (
        "properties: BCP037 the property 'sharedKeyAccess' is not allowed on objects of type "
        "StorageAccountPropertiesCreateParameters"
    )
    assert resource_errors(first) == [unknown]
    assert resource_errors(second) == [
        "properties/accessTier: BCP036 'Warm' is not one of ['Hot', 'Cool', 'Premium', 'Cold']",
        unknown,
    ]


def test_what_the_evaluator_cannot_read_as_bicep_does_is_refused(tmp_path: Path):
    # tree-sitter-bicep reads `a && b.c` as `(a && b).c`: evaluating that would check something else.
    (tmp_path / "main.bicep").write_text(
        "param on bool = true\nparam tags object = {}\n"
        "resource rg 'Microsoft.Resources/resourceGroups@2022-09-01' = {\n"
        "  name: 'rg'\n  location: 'eastus2'\n  tags: { enabled: string(on && tags.enabled) }\n}\n",
        encoding="utf-8",
    )
    with pytest.raises(BicepEvaluationError, match="misreads"):
        Deployment({}, main=tmp_path / "main.bicep")


# -- azd --------------------------------------------------------------------------------------------------------------
def test_azd_passes_the_environment_and_leaves_unset_variables_to_the_defaults():
    env = SCENARIOS["developer"]
    assert azd_parameters(INFRA / "main.parameters.json", env) == {
        "environmentName": "dev",
        "location": "eastus2",
        "principalId": env.principal_id,
        "principalType": "User",
    }


def test_a_pipeline_gets_its_roles_as_a_service_principal_and_a_user_as_a_user():
    for name, expected in (("developer", "User"), ("pipeline", "ServicePrincipal")):
        deployment = scenario(name)
        mine = [
            r
            for r in deployment.of_type("Microsoft.Authorization/roleAssignments")
            if r.arm["properties"]["principalId"] == SCENARIOS[name].principal_id
        ]
        assert len(mine) == 5, name  # three storage roles, Monitoring Metrics Publisher, Cognitive Services OpenAI User
        assert {r.arm["properties"]["principalType"] for r in mine} == {expected}
    # An azd without AZURE_PRINCIPAL_TYPE (before 1.17.1) leaves the parameter out: the default, User, applies.
    older = AzdEnvironment(SCENARIOS["developer"].values, SCENARIOS["developer"].principal_id, principal_type=None)
    assert "principalType" not in azd_parameters(INFRA / "main.parameters.json", older)
    assert deployment_of(older).scope("main/rbac").value("userPrincipalType") == "User"


def test_model_deployments_are_global_standard_unless_the_environment_says_otherwise():
    skus = [
        r.arm["sku"]["name"] for r in scenario("developer").of_type("Microsoft.CognitiveServices/accounts/deployments")
    ]
    assert skus == ["GlobalStandard", "GlobalStandard"]
    regional = AzdEnvironment(
        {**SCENARIOS["developer"].values, "AZURE_OPENAI_EMBEDDING_DEPLOYMENT_SKU": "Standard"},
        SCENARIOS["developer"].principal_id,
        "User",
    )
    deployments = deployment_of(regional).of_type("Microsoft.CognitiveServices/accounts/deployments")
    assert [r.arm["sku"]["name"] for r in deployments] == ["GlobalStandard", "Standard"]
    wrong = AzdEnvironment(
        {**regional.values, "AZURE_OPENAI_CHAT_DEPLOYMENT_SKU": "Premium"}, regional.principal_id, "User"
    )
    allowed = "BCP036 'Premium' is not one of the allowed values ['Standard', 'GlobalStandard', 'DataZoneStandard']"
    assert deployment_of(wrong).problems == [
        f"main.bicep: param chatDeploymentSkuName: {allowed}",  # refused by ARM when azd deploys
        f"app/openai.bicep: param chatDeploymentSkuName: {allowed}",  # and by Bicep in the module
    ]


def test_easy_auth_is_deployed_only_with_a_client_id():
    def auth_and_identity(name: str) -> tuple[Any, str]:
        deployment = scenario(name)
        configs = {r.arm["name"].rsplit("/", 1)[1]: r for r in deployment.of_type("Microsoft.Web/sites/config")}
        return configs["authsettingsV2"].condition, configs["appsettings"].arm["properties"]["CALLER_IDENTITY"]

    assert auth_and_identity("developer") == (False, "request")
    assert auth_and_identity("pipeline") == (True, "principal")


# -- the committed copy of the schemas --------------------------------------------------------------------------------
def test_the_schema_copy_has_every_type_and_api_version_the_templates_use():
    for resource_type, scope in sorted(used_types()):
        locate(resource_type, scope)  # KeyError: run `python -m tests.infra.arm_schema --extract`
    # The API versions of `existing` references are ones the copy has too (Bicep checks that the type exists).
    copied = {(type_name, api) for type_name, api, _ in schema_index()}
    for path in sorted(INFRA.rglob("*.bicep")):
        for declaration in BicepFile(path).resources.values():
            full, api = str(declaration.type).split("@", 1)
            assert (full.lower(), api) in copied, f"{path.name}: {declaration.name} {declaration.type}"


def test_the_schema_copy_is_small_and_keeps_its_licence_and_source():
    files = sorted(p.relative_to(COPY).as_posix() for p in COPY.rglob("*") if p.is_file())
    assert {"LICENSE", "README.md", "common/definitions.json"} <= set(files)
    assert sum(p.stat().st_size for p in COPY.rglob("*") if p.is_file()) < 600_000
    licence = (COPY / "LICENSE").read_text(encoding="utf-8")
    assert licence.startswith("The MIT License (MIT)") and "Copyright (c) 2015 Microsoft" in licence
    readme = (COPY / "README.md").read_text(encoding="utf-8")
    assert "Azure/azure-resource-manager-schemas" in readme and re.search(r"commit [0-9a-f]{40}", readme)
    # One file per provider and API version deployed, holding only the definitions deployed.
    assert {relative for relative, _, _ in (locate(t, s) for t, s in used_types())} == set(read_copy()) - {
        "common/definitions.json"
    }


def test_schema_differences_from_bicep_are_few_and_cited():
    assert set(SCHEMA_ONLY_REQUIRED) == {("microsoft.resources/resourcegroups", "properties")}
    assert all("specification" in reason for reason in SCHEMA_ONLY_REQUIRED.values())


@needs_source
def test_the_schema_copy_is_exactly_what_extraction_from_the_reference_gives():
    assert read_copy() == extract(), "regenerate it: .venv/bin/python -m tests.infra.arm_schema --extract"
    assert (COPY / "LICENSE").read_bytes() == (SOURCE / "LICENSE").read_bytes()
    assert f"commit {source_commit()}" in (COPY / "README.md").read_text(encoding="utf-8").replace("\n", " ")


@needs_source
def test_an_api_version_the_reference_lacks_is_reported_not_skipped():
    with pytest.raises(KeyError, match=re.escape("no schema for Microsoft.DocumentDB/databaseAccounts@2099-01-01")):
        locate("Microsoft.DocumentDB/databaseAccounts@2099-01-01", "resourceGroup", SOURCE)


# -- the README -------------------------------------------------------------------------------------------------------
def azure_section() -> str:
    readme = (INFRA.parents[1] / "README.md").read_text(encoding="utf-8")
    return readme[readme.index("### On Azure") : readme.index("## Tests")]


def test_the_readme_deploy_section_names_what_the_templates_create_write_and_read():
    section = azure_section()
    deployment = scenario("pipeline")  # every resource, App Service Authentication included
    for resource in deployment.resources:
        full, _ = resource.type.split("@", 1)
        if full.count("/") == 1 or full.endswith("RoleAssignments"):
            assert f"`{resource.type}`" in section, resource.type  # the type and its API version
        else:
            assert f"`{full.rsplit('/', 1)[1]}`" in section, resource.type  # a child: by its kind
    main = BicepFile(INFRA / "main.bicep")
    for output in main.outputs:
        assert f"`{output}`" in section, f"output {output}"
    variables = re.findall(r"\$\{(\w+)\}", (INFRA / "main.parameters.json").read_text(encoding="utf-8"))
    for variable in variables:
        assert f"`{variable}`" in section, f"azd variable {variable}"
    settings = deployment.of_type("Microsoft.Web/sites/config")[0].arm["properties"]
    for setting in settings:
        assert f"`{setting}" in section, f"app setting {setting}"
    assert '`"version": "V2"`' in section
    for name in ("chatDeploymentSkuName", "embeddingDeploymentSkuName"):
        assert main.params[name].value == "GlobalStandard" and f"`{name}` | `GlobalStandard`" in section
