// Agent memory service on Azure: a Flex Consumption Function App (Python 3.11, Durable Functions) on Cosmos DB for
// NoSQL and Azure OpenAI. Every connection is made with one user-assigned managed identity; no resource accepts keys
// (Cosmos DB, Azure OpenAI and Application Insights disable local auth, storage disables shared keys), and no key is
// written to an app setting. Deployed by `azd up` (azure.yaml points here).
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; it seeds the unique suffix of every resource name.')
param environmentName string

@minLength(1)
@description('Region of every resource except Azure OpenAI. It must offer Flex Consumption and Cosmos DB serverless.')
@metadata({ azd: { type: 'location' } })
param location string

@description('Region of the Azure OpenAI account (model availability differs by region); empty means `location`.')
param openAiLocation string = ''

@description('Object id of whoever runs azd (AZURE_PRINCIPAL_ID): it gets the same data roles as the app. Empty skips them.')
param principalId string = ''

// main.parameters.json passes ${AZURE_PRINCIPAL_TYPE}: azd substitutes the kind of principal signed in to azd, User or
// ServicePrincipal when it signed in with a client id (Azure/azure-dev, cli/azd/pkg/infra/provisioning/
// current_principal_id_provider.go, CurrentPrincipalType; azd 1.17.1 and later). A role assignment whose principalType
// is not the principal's own fails (UnmatchedPrincipalType). Older azd leaves the variable unset, and azd then omits
// the parameter (bicep_provider.go, loadParameters), so this default applies.
@description('Kind of principal that principalId is: User for a developer, ServicePrincipal for a pipeline.')
@allowed(['User', 'ServicePrincipal'])
param principalType string = 'User'

// The names below default to the defaults of memory_core.config.Settings; tests/infra checks that they agree.
@description('COSMOS_DATABASE_NAME')
param cosmosDatabaseName string = 'agent_memory'

@description('COSMOS_INTERACTIONS_CONTAINER: sessions, turns and chunks')
param cosmosInteractionsContainerName string = 'interactions'

@description('COSMOS_SUMMARIES_CONTAINER: session summaries')
param cosmosSummariesContainerName string = 'session_summaries'

@description('COSMOS_INSIGHTS_CONTAINER: insights')
param cosmosInsightsContainerName string = 'insights'

@description('Vector index of /embedding. Immutable once a container exists: changing it needs new containers.')
@allowed(['quantizedFlat', 'diskANN'])
param vectorIndexType string = 'quantizedFlat'

@description('Chat model, also the name of its deployment (AZURE_OPENAI_DEPLOYMENT).')
param chatModelName string = 'gpt-4o'

@description('Version of the chat model.')
param chatModelVersion string = '2024-11-20'

// Deployment types: GlobalStandard is offered for these models in many more regions than the regional Standard
// (Learn, "Foundry Models sold directly by Azure: region availability": in April 2026 text-embedding-3-small had Global
// Standard in 9 of the 10 Americas regions, Standard in 4; gpt-4o 2024-11-20 in 9 and 8). GlobalStandard may
// process prompts in any region where the model is deployed (data at rest stays in the geography); DataZoneStandard
// keeps processing within a data zone (US, EU or APAC), Standard within the region.
@description('Deployment SKU of the chat model (AZURE_OPENAI_CHAT_DEPLOYMENT_SKU).')
@allowed(['Standard', 'GlobalStandard', 'DataZoneStandard'])
param chatDeploymentSkuName string = 'GlobalStandard'

@description('Chat deployment capacity, in thousands of tokens per minute.')
@minValue(1)
param chatDeploymentCapacity int = 30

@description('Embedding model, also the name of its deployment (AZURE_OPENAI_EMBEDDING_DEPLOYMENT).')
param embeddingModelName string = 'text-embedding-3-small'

@description('Version of the embedding model.')
param embeddingModelVersion string = '1'

@description('Deployment SKU of the embedding model (AZURE_OPENAI_EMBEDDING_DEPLOYMENT_SKU).')
@allowed(['Standard', 'GlobalStandard', 'DataZoneStandard'])
param embeddingDeploymentSkuName string = 'GlobalStandard'

@description('Embedding deployment capacity, in thousands of tokens per minute.')
@minValue(1)
param embeddingDeploymentCapacity int = 30

@description('EMBEDDING_DIMENSIONS: vector size, part of the store identity and of the immutable container vector policy. At most the model\'s own size (1536 for text-embedding-3-small).')
@minValue(1)
@maxValue(3072)
param embeddingDimensions int = 1536

@description('AZURE_OPENAI_API_VERSION: a version whose embeddings API accepts `dimensions` (2024-06-01 or later).')
param openAiApiVersion string = '2024-10-21'

@description('DURABLE_HUB_NAME: Durable Functions task hub (letters and digits, 3 to 45).')
@minLength(3)
@maxLength(45)
param durableHubName string = 'AgentMemory'

@description('CLEANUP_SCHEDULE: NCRONTAB schedule of the cleanup timer.')
param cleanupSchedule string = '0 * * * * *'

@description('Memory of one Flex Consumption instance, in MB.')
@allowed([512, 2048, 4096])
param instanceMemoryMB int = 2048

@description('Most Flex Consumption instances the app scales out to.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 100

@description('Always-ready instances of the http group: requests never wait for a cold start. Billed while idle too.')
@minValue(0)
param alwaysReadyHttpInstances int = 1

@description('Always-ready instances of the durable group: background work (batches, reflection) starts without waiting for the scale controller to notice its queues. Billed while idle too.')
@minValue(0)
param alwaysReadyDurableInstances int = 1

@description('Cosmos DB default consistency. Strong (single region) gives read-your-writes across Function instances; Session guarantees it only within one client, i.e. one instance.')
@allowed(['Strong', 'BoundedStaleness', 'Session', 'ConsistentPrefix', 'Eventual'])
param cosmosConsistencyLevel string = 'Strong'

@description('Client id of a Microsoft Entra ID app registration (this tenant) that callers get tokens for: turns on App Service Authentication in front of the app (401 without a valid token, function keys still apply) and CALLER_IDENTITY=principal (every memory route is the token principal\'s memory). Empty: both off.')
param easyAuthClientId string = ''

var abbrs = {
  resourceGroup: 'rg-'
  managedIdentity: 'id-'
  appServicePlan: 'plan-'
  functionApp: 'func-'
  storageAccount: 'st'
  cosmosAccount: 'cosmos-'
  openAiAccount: 'oai-'
  logAnalytics: 'log-'
  appInsights: 'appi-'
}
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = { 'azd-env-name': environmentName }
var functionAppName = '${abbrs.functionApp}api-${resourceToken}'
var deploymentStorageContainerName = 'app-package-${take(functionAppName, 32)}-${take(toLower(uniqueString(functionAppName, resourceToken)), 7)}'

resource rg 'Microsoft.Resources/resourceGroups@2022-09-01' = {
  name: '${abbrs.resourceGroup}${environmentName}'
  location: location
  tags: tags
}

module identity 'app/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: '${abbrs.managedIdentity}api-${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: '${abbrs.logAnalytics}${resourceToken}'
    applicationInsightsName: '${abbrs.appInsights}${resourceToken}'
    location: location
    tags: tags
  }
}

module storage 'app/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: '${abbrs.storageAccount}${resourceToken}'
    location: location
    tags: tags
    deploymentContainerName: deploymentStorageContainerName
  }
}

module db 'app/db.bicep' = {
  name: 'db'
  scope: rg
  params: {
    accountName: '${abbrs.cosmosAccount}${resourceToken}'
    location: location
    tags: tags
    databaseName: cosmosDatabaseName
    containerNames: [
      cosmosInteractionsContainerName
      cosmosSummariesContainerName
      cosmosInsightsContainerName
    ]
    embeddingDimensions: embeddingDimensions
    vectorIndexType: vectorIndexType
    consistencyLevel: cosmosConsistencyLevel
  }
}

module openai 'app/openai.bicep' = {
  name: 'openai'
  scope: rg
  params: {
    name: '${abbrs.openAiAccount}${resourceToken}'
    location: empty(openAiLocation) ? location : openAiLocation
    tags: tags
    chatModelName: chatModelName
    chatModelVersion: chatModelVersion
    chatDeploymentSkuName: chatDeploymentSkuName
    chatDeploymentCapacity: chatDeploymentCapacity
    embeddingModelName: embeddingModelName
    embeddingModelVersion: embeddingModelVersion
    embeddingDeploymentSkuName: embeddingDeploymentSkuName
    embeddingDeploymentCapacity: embeddingDeploymentCapacity
  }
}

module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    storageAccountName: storage.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    cosmosAccountName: db.outputs.accountName
    openAiAccountName: openai.outputs.name
    appPrincipalId: identity.outputs.principalId
    userPrincipalId: principalId
    userPrincipalType: principalType
  }
}

module api 'app/api.bicep' = {
  name: 'api'
  scope: rg
  params: {
    name: functionAppName
    planName: '${abbrs.appServicePlan}${resourceToken}'
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    deploymentStorageContainerName: deploymentStorageContainerName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    alwaysReadyHttpInstances: alwaysReadyHttpInstances
    alwaysReadyDurableInstances: alwaysReadyDurableInstances
    cosmosEndpoint: db.outputs.endpoint
    cosmosDatabaseName: db.outputs.databaseName
    cosmosInteractionsContainerName: cosmosInteractionsContainerName
    cosmosSummariesContainerName: cosmosSummariesContainerName
    cosmosInsightsContainerName: cosmosInsightsContainerName
    openAiEndpoint: openai.outputs.endpoint
    openAiApiVersion: openAiApiVersion
    chatDeploymentName: openai.outputs.chatDeploymentName
    embeddingDeploymentName: openai.outputs.embeddingDeploymentName
    embeddingDimensions: embeddingDimensions
    durableHubName: durableHubName
    cleanupSchedule: cleanupSchedule
    easyAuthClientId: easyAuthClientId
  }
  // The host starts as soon as the app exists: give its identity the data roles first, so that the first start does
  // not fail on storage, Cosmos DB or Azure OpenAI (role propagation can still lag by a minute or two).
  dependsOn: [
    rbac
  ]
}

// azd writes these to the environment (.azure/<env>/.env); the names are the app-setting names where there is one.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output SERVICE_API_NAME string = api.outputs.name
output SERVICE_API_URI string = api.outputs.uri
output AZURE_FUNCTION_NAME string = api.outputs.name
// Not named AZURE_CLIENT_ID: azd and CI pipelines use that variable for their own sign-in.
output AZURE_FUNCTION_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output APPLICATIONINSIGHTS_CONNECTION_STRING string = monitoring.outputs.connectionString
output COSMOS_ENDPOINT string = db.outputs.endpoint
output COSMOS_DATABASE_NAME string = db.outputs.databaseName
output COSMOS_INTERACTIONS_CONTAINER string = cosmosInteractionsContainerName
output COSMOS_SUMMARIES_CONTAINER string = cosmosSummariesContainerName
output COSMOS_INSIGHTS_CONTAINER string = cosmosInsightsContainerName
output AZURE_OPENAI_ENDPOINT string = openai.outputs.endpoint
output AZURE_OPENAI_DEPLOYMENT string = openai.outputs.chatDeploymentName
output AZURE_OPENAI_EMBEDDING_DEPLOYMENT string = openai.outputs.embeddingDeploymentName
output AZURE_OPENAI_API_VERSION string = openAiApiVersion
output EMBEDDING_DIMENSIONS int = embeddingDimensions
output DURABLE_HUB_NAME string = durableHubName
