"""Offline checks of infra/bicep and azure.yaml.

There is no Bicep CLI here (``bicep build`` and ``az bicep`` download their binary at run time), so these tests stand
in for what can be checked without it: every file parses (tree-sitter-bicep), modules resolve to local files and
agree with them on parameters and outputs, and the project's own invariants hold on the parse tree: explicit API
versions, no keys anywhere, local auth disabled, the data roles granted, Cosmos DB containers created with the very
policies the adapter would create, and app settings that are exactly what ``memory_core.config.Settings`` reads.
Every resource the deployment creates is validated against Azure Resource Manager's JSON schema of its API version in
``test_arm_schema.py``. Real deployment is left to ``bicep build`` / ``azd provision`` elsewhere.
"""

from __future__ import annotations

import functools
import json
import re
import tomllib
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml
from pydantic import ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from memory_core.adapters.cosmos import CosmosStore
from memory_core.adapters.openai_models import default_embedding_dimensions, resolve_embedding_dimensions
from memory_core.config import Settings
from tests.infra.bicep_tree import BicepFile, Expr, parse, syntax_problems

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra" / "bicep"
BICEP_FILES = sorted(INFRA.rglob("*.bicep"))
SETTINGS_DEFAULTS = {name: info.default for name, info in Settings.model_fields.items()}

# Built-in role definition ids (Azure RBAC), each checked to be granted on the resource it concerns.
ROLE_IDS = {
    "storageBlobDataOwner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "storageQueueDataContributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
    "storageTableDataContributor": "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
    "monitoringMetricsPublisher": "3913510d-42f4-4e42-8a64-420c390055eb",
    "cognitiveServicesOpenAIUser": "5e0bd9bd-7b93-4f28-af87-19fc36ad61bd",
}
COSMOS_DATA_CONTRIBUTOR = "00000000-0000-0000-0000-000000000002"  # Cosmos DB Built-in Data Contributor (data plane)

# What "production" means for this service: the Azure store and models instead of the local defaults.
PRODUCTION_MODE = {"STORE": "cosmos", "LLM_PROVIDER": "azure_openai", "EMBEDDINGS_PROVIDER": "azure_openai"}
# Names of resources that infra creates: pinned in the app settings, so that a changed code default cannot point the
# app at a container or deployment that does not exist.
PINNED_TO_INFRA = {
    "COSMOS_DATABASE_NAME",
    "COSMOS_INTERACTIONS_CONTAINER",
    "COSMOS_SUMMARIES_CONTAINER",
    "COSMOS_INSIGHTS_CONTAINER",
    "COSMOS_VECTOR_SEARCH",
    "COSMOS_FULL_TEXT_SEARCH",
    "AZURE_OPENAI_DEPLOYMENT",
    "AZURE_OPENAI_EMBEDDING_DEPLOYMENT",
    "EMBEDDING_DIMENSIONS",
}
# Settings of the Functions host and its extensions (not read by memory_core).
HOST_SETTING = re.compile(r"^(FUNCTIONS_\w+|AzureWebJobs\w*__\w+|APPLICATIONINSIGHTS_\w+)$")
# Flex Consumption takes these from functionAppConfig and rejects them as app settings; the plain connection-string
# forms would need shared keys.
FORBIDDEN_SETTINGS = {
    "FUNCTIONS_WORKER_RUNTIME",
    "FUNCTIONS_EXTENSION_VERSION",
    "WEBSITE_RUN_FROM_PACKAGE",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
    "WEBSITE_CONTENTSHARE",
    "AzureWebJobsStorage",
    "AzureWebJobsDashboard",
}
SECRET_NAME = re.compile(r"KEY|SECRET|PASSWORD|TOKEN|SAS\b|CONNECTION_?STRING", re.IGNORECASE)
# Names an output may have besides app-setting names: azd's conventional environment values.
AZD_OUTPUT = re.compile(r"^(AZURE_[A-Z_]+|SERVICE_API_[A-Z]+)$")
PLACEHOLDER = "https://placeholder.invalid/"
# An app setting that a string parameter switches: `empty(param) ? 'value when empty' : 'value otherwise'`.
SWITCH = r"empty\((\w+)\) \? '([^']*)' : '([^']*)'"


class GivenSettings(Settings):
    """``Settings`` from the given values only: the environment of the test process must not leak in."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


@functools.cache
def bicep(relative: str) -> BicepFile:
    return BicepFile(INFRA / relative)


def only(declarations: list[Any]) -> Any:
    assert len(declarations) == 1, declarations
    return declarations[0]


def site_config(name: str) -> Any:
    """The ``Microsoft.Web/sites/config`` resource of api.bicep with this name (``appsettings``, ``authsettingsV2``)."""
    configs = bicep("app/api.bicep").resources_of_type("Microsoft.Web/sites/config")
    return only([resource for resource in configs if resource.value["name"] == name])


def app_settings() -> dict[str, Any]:
    resource = site_config("appsettings")
    assert not resource.condition, "the app settings are always deployed"
    properties = resource.value["properties"]
    assert isinstance(properties, dict), "app settings must be a literal object for these checks"
    return properties


def setting_value(value: Any) -> Any:
    """An app-setting value followed from api.bicep through main.bicep to a literal default; None if not literal."""
    if not isinstance(value, Expr):
        return value
    api, main = bicep("app/api.bicep"), bicep("main.bicep")
    if match := re.fullmatch(r"string\((\w+)\)", value.text):
        inner = setting_value(Expr("identifier", match[1]))
        return None if inner is None else str(inner)
    if match := re.fullmatch(SWITCH, value.text):  # empty(param) ? 'off' : 'on'
        switch = setting_value(Expr("identifier", match[1]))
        return None if switch is None else (match[2] if switch == "" else match[3])
    if value.identifier in api.params:
        passed = main.modules["api"].value["params"].get(value.identifier, api.params[value.identifier].value)
        if isinstance(passed, Expr):
            outer = main.params.get(passed.identifier or "")
            return None if outer is None else outer.value
        return passed
    return None


@functools.cache
def production_settings() -> GivenSettings:
    """The settings the deployed app would read: literal values, and a placeholder where Azure fills one in."""
    values = {name: setting_value(value) for name, value in app_settings().items() if name in Settings.model_fields}
    return GivenSettings(**{name: PLACEHOLDER if v is None else v for name, v in values.items()})


def required_in_production() -> set[str]:
    """Settings that production needs, derived from the code rather than listed by hand."""
    required = set(PRODUCTION_MODE)
    # Optional fields that the validator demands in production mode: drop each in turn and see it fail.
    optional_strings = [
        name
        for name, info in Settings.model_fields.items()
        if info.default is None and "str" in str(info.annotation) and name not in PRODUCTION_MODE
    ]
    complete = {**PRODUCTION_MODE, **dict.fromkeys(optional_strings, PLACEHOLDER)}
    GivenSettings(**complete)
    for name in optional_strings:
        with_out = {k: v for k, v in complete.items() if k != name}
        try:
            GivenSettings(**with_out)
        except ValidationError:
            required.add(name)
    # %NAME% references of the host (host.json) and of trigger bindings (schedules).
    sources = [
        ROOT / "host.json",
        ROOT / "function_app.py",
        *ROOT.glob("http_api/*.py"),
        *ROOT.glob("orchestrations/*.py"),
    ]
    for source in sources:
        required.update(re.findall(r"%([A-Za-z_]\w*)%", source.read_text()))
    # A user-assigned identity is only found by its client id (DefaultAzureCredential reads AZURE_CLIENT_ID).
    function_app = only(bicep("app/api.bicep").resources_of_type("Microsoft.Web/sites"))
    if function_app.value["identity"]["type"] == "UserAssigned":
        required.add("AZURE_CLIENT_ID")
    return required


# -- syntax and structure ---------------------------------------------------------------------------------------------
def test_infra_has_the_expected_modules():
    names = {p.relative_to(INFRA).as_posix() for p in BICEP_FILES}
    expected = {"api", "db", "identity", "monitoring", "openai", "rbac", "storage"}
    assert names == {"main.bicep", *(f"app/{m}.bicep" for m in expected)}


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: p.relative_to(INFRA).as_posix())
def test_every_bicep_file_parses_without_syntax_errors(path: Path):
    assert syntax_problems(bicep(path.relative_to(INFRA).as_posix()).tree) == []


def test_the_syntax_gate_catches_broken_bicep():
    broken = b"resource st 'Microsoft.Storage/storageAccounts@2023-05-01' = {\n  name: 'x'\n  properties: {\n}\n"
    assert syntax_problems(parse(broken))
    assert syntax_problems(parse(b"param p string = \n")), "a missing value must be reported"


def test_main_targets_the_subscription_and_tags_the_resource_group():
    main = bicep("main.bicep")
    assert "targetScope = 'subscription'" in main.source.decode()
    rg = only(main.resources_of_type("Microsoft.Resources/resourceGroups"))
    assert main.resolve(rg.value["tags"]) == {"azd-env-name": Expr("identifier", "environmentName")}
    assert "uniqueString(subscription().id, environmentName, location)" in main.variables["resourceToken"].value.text


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: p.relative_to(INFRA).as_posix())
def test_modules_are_local_files_that_agree_on_params(path: Path):
    parent = bicep(path.relative_to(INFRA).as_posix())
    for module in parent.modules.values():
        assert not re.match(r"^(br|ts)[:/]", module.type), f"{module.name}: registry modules cannot be resolved offline"
        target = (path.parent / module.type).resolve()
        assert target.is_file(), f"{module.name}: {module.type} does not exist"
        child = bicep(target.relative_to(INFRA).as_posix())
        passed = set(module.value.get("params", {}))
        assert passed <= set(child.params), f"{module.name}: unknown params {passed - set(child.params)}"
        missing = {name for name, p in child.params.items() if not p.has_default} - passed
        assert not missing, f"{module.name}: required params not passed: {missing}"


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: p.relative_to(INFRA).as_posix())
def test_module_outputs_that_are_used_exist(path: Path):
    parent = bicep(path.relative_to(INFRA).as_posix())
    for node in parent.nodes("member_expression"):
        match = re.fullmatch(r"(\w+)\.outputs\.(\w+)", (node.text or b"").decode())
        if match and match[1] in parent.modules:
            child = bicep((path.parent / parent.modules[match[1]].type).resolve().relative_to(INFRA).as_posix())
            assert match[2] in child.outputs, f"{match[1]} has no output {match[2]}"


# -- invariants -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: p.relative_to(INFRA).as_posix())
def test_every_resource_declares_an_explicit_api_version(path: Path):
    resources = bicep(path.relative_to(INFRA).as_posix()).resources.values()
    for resource in resources:
        assert re.fullmatch(r"[A-Za-z]+\.[A-Za-z.]+(/\w+)+@\d{4}-\d{2}-\d{2}(-preview)?", str(resource.type)), (
            f"{resource.name}: {resource.type!r}"
        )


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: p.relative_to(INFRA).as_posix())
def test_no_template_reads_keys_or_secrets(path: Path):
    source = bicep(path.relative_to(INFRA).as_posix())
    # listKeys(), listConnectionStrings(), listAccountSas(), ... are how templates read secrets; none may be called.
    for call in source.nodes("call_expression"):
        function = call.child_by_field_name("function")
        name = (function.text or b"").decode().rsplit(".", 1)[-1] if function else ""
        assert not name.lower().startswith("list"), f"{path.name}: {name}() reads secrets"
    text = source.source.decode()
    assert "AccountKey=" not in text and "SharedAccessKey" not in text
    for output in source.outputs.values():
        assert "secure" not in output.decorators, f"{output.name}: no secret outputs"


def test_local_auth_is_disabled_on_every_service():
    cosmos = only(bicep("app/db.bicep").resources_of_type("Microsoft.DocumentDB/databaseAccounts"))
    assert cosmos.value["properties"]["disableLocalAuth"] is True
    assert cosmos.value["properties"]["disableKeyBasedMetadataWriteAccess"] is True
    storage = only(bicep("app/storage.bicep").resources_of_type("Microsoft.Storage/storageAccounts"))
    assert storage.value["properties"]["allowSharedKeyAccess"] is False
    assert storage.value["properties"]["allowBlobPublicAccess"] is False
    openai = only(bicep("app/openai.bicep").resources_of_type("Microsoft.CognitiveServices/accounts"))
    assert openai.value["properties"]["disableLocalAuth"] is True
    # Entra ID tokens for Azure OpenAI need a custom subdomain.
    assert openai.value["properties"]["customSubDomainName"] == Expr("identifier", "name")
    insights = only(bicep("app/monitoring.bicep").resources_of_type("Microsoft.Insights/components"))
    assert insights.value["properties"]["DisableLocalAuth"] is True


def test_the_identity_and_the_deploying_user_get_every_data_role():
    rbac = bicep("app/rbac.bicep")
    assert rbac.variables["roles"].value == ROLE_IDS
    assert rbac.variables["cosmosDataContributorRoleId"].value == COSMOS_DATA_CONTRIBUTOR
    principals = rbac.variables["principals"].value.text
    assert "{ id: appPrincipalId, type: 'ServicePrincipal' }" in principals
    assert "{ id: userPrincipalId, type: userPrincipalType }" in principals
    # Durable Functions needs blobs, queues and tables of the host storage.
    storage_roles = rbac.resolve(rbac.variables["storageRoleIds"].value)
    storage_role_names = ["storageBlobDataOwner", "storageQueueDataContributor", "storageTableDataContributor"]
    assert storage_roles == [ROLE_IDS[name] for name in storage_role_names]
    assignments = {d.name: d for d in rbac.resources_of_type("Microsoft.Authorization/roleAssignments")}
    scopes = {name: d.value["scope"].text for name, d in assignments.items()}
    assert scopes == {"storageRoles": "storage", "monitoringRoles": "applicationInsights", "openAiRoles": "openAi"}
    # Each assignment is made once per principal: the app's identity and, when given, the deploying user.
    assert assignments["storageRoles"].loop_source == "storageAssignments"
    product = rbac.variables["storageAssignments"].value.text
    assert "range(0, length(principals) * length(storageRoleIds))" in product
    assert (
        "principals[i / length(storageRoleIds)]" in product and "storageRoleIds[i % length(storageRoleIds)]" in product
    )
    assert assignments["monitoringRoles"].loop_source == assignments["openAiRoles"].loop_source == "principals"
    role_of = {name: d.value["properties"]["roleDefinitionId"].text for name, d in assignments.items()}
    assert "assignment.roleId" in role_of["storageRoles"]
    assert "roles.monitoringMetricsPublisher" in role_of["monitoringRoles"]
    assert "roles.cognitiveServicesOpenAIUser" in role_of["openAiRoles"]
    for d in assignments.values():
        assert d.value["properties"]["principalType"].text.endswith(".type")
    cosmos = only(rbac.resources_of_type("Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments"))
    assert cosmos.value["parent"] == Expr("identifier", "cosmos") and cosmos.loop_source == "principals"
    assert "sqlRoleDefinitions/${cosmosDataContributorRoleId}" in cosmos.value["properties"]["roleDefinitionId"].text
    main_rbac = bicep("main.bicep").modules["rbac"].value["params"]
    assert main_rbac["appPrincipalId"].text == "identity.outputs.principalId"
    assert main_rbac["userPrincipalId"] == Expr("identifier", "principalId")


# -- Cosmos DB: what the adapter expects ------------------------------------------------------------------------------
def test_cosmos_account_is_serverless_with_vector_and_full_text_search():
    account = only(bicep("app/db.bicep").resources_of_type("Microsoft.DocumentDB/databaseAccounts"))
    capabilities = {c["name"] for c in account.value["properties"]["capabilities"]}
    assert capabilities == {"EnableServerless", "EnableNoSQLVectorSearch", "EnableNoSQLFullTextSearch"}


def test_cosmos_containers_have_the_policies_the_adapter_would_create():
    db, main = bicep("app/db.bicep"), bicep("main.bicep")
    dimensions = main.params["embeddingDimensions"].value
    vector_index = main.params["vectorIndexType"].value
    container = only(db.resources_of_type("Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers"))
    assert container.loop
    resource = db.resolve(
        container.value["properties"]["resource"],
        {"embeddingDimensions": dimensions, "vectorIndexType": vector_index, "name": "<each>"},
    )
    store = CosmosStore(
        PLACEHOLDER,
        "unused",
        database="d",
        interactions_container="i",
        summaries_container="s",
        insights_container="n",
        vector_search=True,
        full_text_search=True,
    )
    expected = store._container_policies(dimensions)
    assert resource["partitionKey"] == {"paths": ["/user_id"], "kind": "Hash", "version": 2}
    assert resource["indexingPolicy"] == expected["indexing_policy"]
    assert resource["vectorEmbeddingPolicy"] == expected["vector_embedding_policy"]
    assert resource["fullTextPolicy"] == expected["full_text_policy"]


def test_cosmos_names_and_vector_size_match_the_settings_defaults():
    main = bicep("main.bicep")
    assert main.params["cosmosDatabaseName"].value == SETTINGS_DEFAULTS["COSMOS_DATABASE_NAME"]
    containers = {
        "cosmosInteractionsContainerName": "COSMOS_INTERACTIONS_CONTAINER",
        "cosmosSummariesContainerName": "COSMOS_SUMMARIES_CONTAINER",
        "cosmosInsightsContainerName": "COSMOS_INSIGHTS_CONTAINER",
    }
    for param, setting in containers.items():
        assert main.params[param].value == SETTINGS_DEFAULTS[setting]
    db_params = main.modules["db"].value["params"]
    assert [e.identifier for e in db_params["containerNames"]] == list(containers)
    assert db_params["embeddingDimensions"] == Expr("identifier", "embeddingDimensions")
    # The vector policy's size is the embedding model's native size (EMBEDDING_DIMENSIONS unset means exactly that).
    embedding_model = SETTINGS_DEFAULTS["AZURE_OPENAI_EMBEDDING_DEPLOYMENT"]
    assert main.params["embeddingModelName"].value == embedding_model
    assert main.params["embeddingDimensions"].value == default_embedding_dimensions(embedding_model) == 1536
    assert main.params["chatModelName"].value == SETTINGS_DEFAULTS["AZURE_OPENAI_DEPLOYMENT"]
    assert main.params["durableHubName"].value == SETTINGS_DEFAULTS["DURABLE_HUB_NAME"]
    assert main.params["cleanupSchedule"].value == SETTINGS_DEFAULTS["CLEANUP_SCHEDULE"]


# -- Azure OpenAI -----------------------------------------------------------------------------------------------------
def test_openai_deployments_are_serialised_and_named_after_their_models():
    openai = bicep("app/openai.bicep")
    deployments = only(openai.resources_of_type("Microsoft.CognitiveServices/accounts/deployments"))
    assert deployments.loop and deployments.decorators.get("batchSize") == [1]
    plan = openai.variables["deployments"].value
    assert [d["name"].identifier for d in plan] == ["chatModelName", "embeddingModelName"]
    assert [d["model"]["name"].identifier for d in plan] == ["chatModelName", "embeddingModelName"]
    assert openai.outputs["chatDeploymentName"].value.text == "modelDeployments[0].name"
    assert openai.outputs["embeddingDeploymentName"].value.text == "modelDeployments[1].name"


# -- the function app -------------------------------------------------------------------------------------------------
def test_function_app_runs_python_of_the_tests_on_flex_consumption_with_one_identity():
    api = bicep("app/api.bicep")
    plan = only(api.resources_of_type("Microsoft.Web/serverfarms"))
    assert plan.value["sku"] == {"name": "FC1", "tier": "FlexConsumption"}
    assert plan.value["properties"]["reserved"] is True
    site = only(api.resources_of_type("Microsoft.Web/sites"))
    assert site.value["kind"] == "functionapp,linux"
    assert site.value["identity"]["type"] == "UserAssigned"
    config = site.value["properties"]["functionAppConfig"]
    python = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]["python_version"]
    assert config["runtime"] == {"name": "python", "version": python}
    storage = config["deployment"]["storage"]
    assert storage["type"] == "blobContainer"
    assert storage["authentication"]["type"] == "UserAssignedIdentity"
    assert storage["authentication"]["userAssignedIdentityResourceId"] == Expr("identifier", "identityId")
    assert "azd-service-name" in site.value["tags"].text and api.params["serviceName"].value == "api"


def test_app_settings_are_settings_fields_or_host_settings():
    names = set(app_settings())
    unknown = {n for n in names if n not in Settings.model_fields and not HOST_SETTING.match(n)}
    assert not unknown, f"not read by memory_core.config.Settings nor the host: {unknown}"
    assert not names & FORBIDDEN_SETTINGS


def test_app_settings_cover_what_production_needs():
    names = set(app_settings())
    required = required_in_production()
    assert {"COSMOS_ENDPOINT", "AZURE_OPENAI_ENDPOINT", "AZURE_CLIENT_ID", "DURABLE_HUB_NAME", "CLEANUP_SCHEDULE"} <= (
        required
    ), "the derivation of required settings lost one"
    assert not (required | PINNED_TO_INFRA) - names, f"missing app settings: {(required | PINNED_TO_INFRA) - names}"


def test_app_settings_carry_no_secrets():
    settings = app_settings()
    secret_like = {n for n in settings if SECRET_NAME.search(n)} - {"APPLICATIONINSIGHTS_CONNECTION_STRING"}
    assert not secret_like, secret_like
    assert not [n for n in Settings.model_fields if n.endswith("_KEY") and n in settings]
    for name, value in settings.items():
        text = value.text if isinstance(value, Expr) else str(value)
        assert not re.search(r"AccountKey=|SharedAccessSignature|\bsig=|listKeys", text), name


def test_host_storage_and_telemetry_use_the_identity():
    settings = app_settings()
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    assert settings["AzureWebJobsStorage__clientId"] == Expr("identifier", "identityClientId")
    assert settings["AzureWebJobsStorage__accountName"].text == "storage.name"
    assert settings["AZURE_CLIENT_ID"] == Expr("identifier", "identityClientId")
    assert (
        settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"].text == "'ClientId=${identityClientId};Authorization=AAD'"
    )
    host = json.loads((ROOT / "host.json").read_text())
    assert host["extensions"]["durableTask"]["hubName"] == "%DURABLE_HUB_NAME%"


def test_app_settings_make_a_valid_production_configuration():
    settings = production_settings()
    assert {name: getattr(settings, name) for name in PRODUCTION_MODE} == PRODUCTION_MODE
    assert settings.COSMOS_KEY is None and settings.AZURE_OPENAI_API_KEY is None, "Entra ID only"
    assert settings.COSMOS_VECTOR_SEARCH and settings.COSMOS_FULL_TEXT_SEARCH
    assert settings.DURABLE_HUB_NAME == SETTINGS_DEFAULTS["DURABLE_HUB_NAME"]
    assert settings.EMBEDDING_DIMENSIONS == 1536
    # EMBEDDING_DIMENSIONS is set, so the adapter sends `dimensions`: the API version must be one that accepts it.
    dimensions, sends = resolve_embedding_dimensions(
        SETTINGS_DEFAULTS["AZURE_OPENAI_EMBEDDING_DEPLOYMENT"], settings.EMBEDDING_DIMENSIONS, "EMBEDDING_DIMENSIONS"
    )
    assert (dimensions, sends) == (1536, True)
    assert settings.AZURE_OPENAI_API_VERSION >= "2024-06-01"


def test_outputs_are_named_like_app_settings():
    outputs = bicep("main.bicep").outputs
    for name in (
        "AZURE_FUNCTION_NAME",
        "COSMOS_ENDPOINT",
        "AZURE_OPENAI_ENDPOINT",
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
    ):
        assert name in outputs
    written = set(app_settings())
    for name in outputs:
        assert name in written or AZD_OUTPUT.match(name), f"output {name} is neither an app setting nor an azd value"
        assert name == "APPLICATIONINSIGHTS_CONNECTION_STRING" or not SECRET_NAME.search(name), name
    assert "AZURE_CLIENT_ID" not in outputs, "would overwrite the variable azd pipelines sign in with"
    assert outputs["APPLICATIONINSIGHTS_CONNECTION_STRING"].value.text == "monitoring.outputs.connectionString"


def test_resources_with_a_location_are_tagged():
    for path in BICEP_FILES:
        source = bicep(path.relative_to(INFRA).as_posix())
        for resource in source.resources.values():
            if not resource.existing and "location" in resource.value:
                assert "tags" in resource.value, f"{path.name}: {resource.name} has no tags"
        for module in source.modules.values():
            if "tags" in bicep((path.parent / module.type).resolve().relative_to(INFRA).as_posix()).params:
                assert module.value["params"].get("tags") == Expr("identifier", "tags"), f"{module.name} gets no tags"


# -- azd --------------------------------------------------------------------------------------------------------------
def test_main_parameters_come_from_the_azd_environment():
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    values = {name: p["value"] for name, p in parameters.items()}
    assert values["environmentName"] == "${AZURE_ENV_NAME}"
    assert values["location"] == "${AZURE_LOCATION}"
    assert values["principalId"] == "${AZURE_PRINCIPAL_ID}"
    # azd substitutes the signed-in principal's kind: a pipeline's service principal gets its roles as one.
    assert values["principalType"] == "${AZURE_PRINCIPAL_TYPE}"
    assert values["chatDeploymentSkuName"] == "${AZURE_OPENAI_CHAT_DEPLOYMENT_SKU}"
    assert values["embeddingDeploymentSkuName"] == "${AZURE_OPENAI_EMBEDDING_DEPLOYMENT_SKU}"
    params = bicep("main.bicep").params
    assert set(values) <= set(params)
    assert {name for name, p in params.items() if not p.has_default} <= set(values)


def test_azure_yaml_points_at_the_infra_and_the_function_app():
    project = yaml.safe_load((ROOT / "azure.yaml").read_text())
    infra = project["infra"]
    assert infra["provider"] == "bicep"
    assert (ROOT / infra["path"] / f"{infra['module']}.bicep") == INFRA / "main.bicep"
    assert (INFRA / f"{infra['module']}.parameters.json").is_file()
    assert list(project["services"]) == [bicep("app/api.bicep").params["serviceName"].value]
    # azd fills AZURE_PRINCIPAL_TYPE in from 1.17.1 on (main.parameters.json maps principalType to it).
    assert project["requiredVersions"] == {"azd": ">= 1.17.1"}
    service = project["services"]["api"]
    assert service == {"project": ".", "language": "python", "host": "function"}
    package = ROOT / service["project"]
    assert (package / "function_app.py").is_file() and (package / "host.json").is_file()
    assert (package / "requirements.txt").is_file()
    # azd packages the project folder; .funcignore keeps what is not the app out of it.
    ignored = set((package / ".funcignore").read_text().split())
    assert {"tests", "infra", ".venv", "devhost", "bench"} <= ignored


def test_background_work_is_not_left_to_a_30_second_poll():
    # Learn, "Azure Storage provider (Durable Functions)", queue polling: an idle control queue is polled at most every
    # maxQueuePollingInterval (30 s by default); the page recommends 10 s or less on Flex, with an always-ready
    # instance for the durable group.
    host = json.loads((ROOT / "host.json").read_text())
    interval = host["extensions"]["durableTask"]["storageProvider"]["maxQueuePollingInterval"]
    hours, minutes, seconds = (int(part) for part in interval.split(":"))
    assert 0 < hours * 3600 + minutes * 60 + seconds <= 10
    api = bicep("app/api.bicep")
    site = only(api.resources_of_type("Microsoft.Web/sites"))
    groups = {
        entry["name"]: entry["instanceCount"]
        for entry in site.value["properties"]["functionAppConfig"]["scaleAndConcurrency"]["alwaysReady"]
    }
    assert groups == {
        "http": Expr("identifier", "alwaysReadyHttpInstances"),
        "durable": Expr("identifier", "alwaysReadyDurableInstances"),
    }
    main = bicep("main.bicep")
    assert main.params["alwaysReadyHttpInstances"].value == main.params["alwaysReadyDurableInstances"].value == 1


def test_durable_distributed_tracing_is_the_opentelemetry_version_python_propagates():
    """host.json names the tracing version: without ``version`` the extension runs V1.

    The Durable extension's ``TraceOptions.Version`` defaults to V1, the original .NET-era correlation
    (HttpCorrelationProtocol unless ``distributedTracingProtocol`` says otherwise); V2 is the OpenTelemetry-compatible
    version (Azure/azure-functions-durable-extension, Options/TraceOptions.cs and DurableDistributedTracingVersion.cs;
    Learn, "Diagnostics in Durable Functions", distributed tracing; the extension's samples/distributed-tracing/v2
    README sets ``DistributedTracingEnabled`` and ``Version: V2``). The Python SDK (azure-functions-durable 1.3 and
    later) sends the W3C ``traceparent`` of the current OpenTelemetry span when it starts an orchestration
    (``DurableOrchestrationClient._get_current_activity_context``), which is what V2 continues.
    """
    host = json.loads((ROOT / "host.json").read_text())
    assert host["extensions"]["durableTask"]["tracing"] == {"distributedTracingEnabled": True, "version": "V2"}
    # The telemetry goes to the app's Application Insights: the host reads the connection string and, with local
    # auth off, the Entra ID authentication string (README, "On Azure", says what reaches it).
    settings = app_settings()
    assert {"APPLICATIONINSIGHTS_CONNECTION_STRING", "APPLICATIONINSIGHTS_AUTHENTICATION_STRING"} <= set(settings)


def test_cosmos_reads_see_writes_made_on_other_instances_by_default():
    main = bicep("main.bicep")
    assert main.params["cosmosConsistencyLevel"].value == "Strong"
    account = only(bicep("app/db.bicep").resources_of_type("Microsoft.DocumentDB/databaseAccounts"))
    assert account.value["properties"]["consistencyPolicy"]["defaultConsistencyLevel"] == Expr(
        "identifier", "consistencyLevel"
    )


# -- App Service Authentication and CALLER_IDENTITY ------------------------------------------------------------------
CLIENT_ID = "11111111-2222-4333-8444-555555555555"


def anonymous_routes() -> list[str]:
    """The API's anonymous HTTP routes (every other route needs a key): those the endpoint table declares anonymous
    (``http_api.openapi.ENDPOINTS``, whose entries the blueprints' decorators are built from) and the routes the
    blueprints of ``http_api`` declare anonymous outside it (the OpenAPI document)."""
    from http_api.openapi import ENDPOINTS

    declared = r'@bp\.route\(route="([^"]+)"[^)]*auth_level=func\.AuthLevel\.ANONYMOUS\)'
    outside = ["/" + m[1] for path in ROOT.glob("http_api/*.py") for m in re.finditer(declared, path.read_text())]
    return sorted([e.path for e in ENDPOINTS if e.auth == "anonymous"] + outside)


def caller_identity(client_id: str) -> str:
    """CALLER_IDENTITY as the app settings set it for an ``easyAuthClientId``."""
    match = re.fullmatch(SWITCH, app_settings()["CALLER_IDENTITY"].text)
    assert match and match[1] == "easyAuthClientId"
    return match[2] if client_id == "" else match[3]


def test_easy_auth_and_principal_mode_are_one_parameter_off_by_default():
    main, api = bicep("main.bicep"), bicep("app/api.bicep")
    assert main.params["easyAuthClientId"].value == api.params["easyAuthClientId"].value == ""
    assert main.modules["api"].value["params"]["easyAuthClientId"] == Expr("identifier", "easyAuthClientId")
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert parameters["easyAuthClientId"] == {"value": "${EASY_AUTH_CLIENT_ID}"}
    auth = site_config("authsettingsV2")
    assert auth.condition_source == "!empty(easyAuthClientId)"
    assert auth.value["parent"] == Expr("identifier", "functionApp")
    # The same parameter sets CALLER_IDENTITY: principal exactly when App Service Authentication is on.
    modes = get_args(Settings.model_fields["CALLER_IDENTITY"].annotation)
    assert caller_identity("") == SETTINGS_DEFAULTS["CALLER_IDENTITY"] == "request"
    assert caller_identity(CLIENT_ID) == "principal" and {"request", "principal"} == set(modes)
    assert production_settings().CALLER_IDENTITY == "request"


def test_easy_auth_refuses_requests_without_a_token_except_on_the_anonymous_routes():
    api = bicep("app/api.bicep")
    auth = site_config("authsettingsV2")
    body = api.resolve(auth.value["properties"], {"easyAuthClientId": CLIENT_ID})
    assert body["platform"] == {"enabled": True}
    assert anonymous_routes() == ["/health", "/openapi.json"]
    assert body["globalValidation"] == {
        "requireAuthentication": True,
        "unauthenticatedClientAction": "Return401",
        "excludedPaths": anonymous_routes(),
    }
    assert body["httpSettings"] == {"requireHttps": True}
    assert list(body["identityProviders"]) == ["azureActiveDirectory"], "the principal is an Entra ID object id"
    entra = body["identityProviders"]["azureActiveDirectory"]
    assert entra["enabled"] is True
    # Token validation only: no client secret (no login flow), this tenant's issuer, the app registration's audiences.
    assert set(entra["registration"]) == {"clientId", "openIdIssuer"} and entra["registration"]["clientId"] == CLIENT_ID
    issuer = entra["registration"]["openIdIssuer"].text
    assert issuer == "'${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'"
    assert entra["validation"] == {"allowedAudiences": [CLIENT_ID, f"api://{CLIENT_ID}"]}
