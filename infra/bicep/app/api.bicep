// The function app: Flex Consumption (FC1), Linux, Python 3.11 (the version the tests run on), one user-assigned
// identity for everything. App settings carry endpoints, names and the identity's client id only: no keys, no
// connection strings with secrets (memory_core.config.Settings reads them; tests/infra checks the names).
param name string
param planName string
param location string = resourceGroup().location
param tags object = {}

@description('azd deploys the service of this name (azure.yaml) to the app tagged with it.')
param serviceName string = 'api'

param identityId string
param identityClientId string
param storageAccountName string
param deploymentStorageContainerName string
param applicationInsightsName string

@allowed([512, 2048, 4096])
param instanceMemoryMB int = 2048
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 100

// Learn, "Flex Consumption plan": HTTP triggers scale in the http group and Durable triggers in the durable group, on
// separate instances. An always-ready durable instance keeps the task hub's queues polled (no wait for the scale
// controller), and the Azure Storage provider page recommends it for Durable apps on Flex; an always-ready http
// instance takes requests without a cold start. Both are billed for their memory while idle (the "baseline").
@minValue(0)
param alwaysReadyHttpInstances int = 1
@minValue(0)
param alwaysReadyDurableInstances int = 1

param cosmosEndpoint string
param cosmosDatabaseName string
param cosmosInteractionsContainerName string
param cosmosSummariesContainerName string
param cosmosInsightsContainerName string

param openAiEndpoint string
param openAiApiVersion string
param chatDeploymentName string
param embeddingDeploymentName string
param embeddingDimensions int

param durableHubName string
param cleanupSchedule string

// App Service Authentication ("Easy Auth") with Microsoft Entra ID, on when a client id is given (empty: off). The
// platform then validates a bearer token of this tenant for that app registration before the Functions host sees a
// request, and answers 401 itself to a request without one (the anonymous routes excepted); function keys still apply
// on top. CALLER_IDENTITY=principal binds every memory route to the token's principal (X-MS-CLIENT-PRINCIPAL-ID).
param easyAuthClientId string = ''

// The app's anonymous routes (AuthLevel.ANONYMOUS in http_api): reachable without a token, as without a key.
var anonymousPaths = [
  '/health'
  '/openapi.json'
]

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': serviceName })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentStorageContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
        alwaysReady: [
          { name: 'http', instanceCount: alwaysReadyHttpInstances }
          { name: 'durable', instanceCount: alwaysReadyDurableInstances }
        ]
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

// Flex Consumption takes the runtime from functionAppConfig: FUNCTIONS_WORKER_RUNTIME, FUNCTIONS_EXTENSION_VERSION and
// WEBSITE_RUN_FROM_PACKAGE must not be set here.
resource appSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: functionApp
  name: 'appsettings'
  properties: {
    // Host storage (Functions host and the Durable task hub's blobs, queues and tables) through the identity.
    AzureWebJobsStorage__accountName: storage.name
    AzureWebJobsStorage__credential: 'managedidentity'
    AzureWebJobsStorage__clientId: identityClientId

    // Telemetry with an Entra ID token (the component has local auth disabled).
    APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsights.properties.ConnectionString
    APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'

    // The identity DefaultAzureCredential uses for Cosmos DB and Azure OpenAI.
    AZURE_CLIENT_ID: identityClientId

    // Durable Functions task hub (host.json) and the cleanup timer (orchestrations/cleanup.py).
    DURABLE_HUB_NAME: durableHubName
    CLEANUP_SCHEDULE: cleanupSchedule

    // Store: Cosmos DB with Entra ID (COSMOS_KEY stays unset).
    STORE: 'cosmos'
    COSMOS_ENDPOINT: cosmosEndpoint
    COSMOS_DATABASE_NAME: cosmosDatabaseName
    COSMOS_INTERACTIONS_CONTAINER: cosmosInteractionsContainerName
    COSMOS_SUMMARIES_CONTAINER: cosmosSummariesContainerName
    COSMOS_INSIGHTS_CONTAINER: cosmosInsightsContainerName
    COSMOS_VECTOR_SEARCH: 'true'
    COSMOS_FULL_TEXT_SEARCH: 'true'

    // Models: Azure OpenAI with Entra ID (AZURE_OPENAI_API_KEY stays unset).
    LLM_PROVIDER: 'azure_openai'
    EMBEDDINGS_PROVIDER: 'azure_openai'
    AZURE_OPENAI_ENDPOINT: openAiEndpoint
    AZURE_OPENAI_API_VERSION: openAiApiVersion
    AZURE_OPENAI_DEPLOYMENT: chatDeploymentName
    AZURE_OPENAI_EMBEDDING_DEPLOYMENT: embeddingDeploymentName
    EMBEDDING_DIMENSIONS: string(embeddingDimensions)

    // Who the user of a memory route is: the authenticated principal behind App Service Authentication, else the
    // user_id the request names.
    CALLER_IDENTITY: empty(easyAuthClientId) ? 'request' : 'principal'
  }
}

// Learn: "Configure your App Service or Azure Functions app to use Microsoft Entra sign-in", and "Work with user
// identities in Azure App Service authentication" for the headers the app reads.
resource authSettings 'Microsoft.Web/sites/config@2024-04-01' = if (!empty(easyAuthClientId)) {
  parent: functionApp
  name: 'authsettingsV2'
  properties: {
    platform: {
      enabled: true
    }
    globalValidation: {
      requireAuthentication: true
      unauthenticatedClientAction: 'Return401'
      excludedPaths: anonymousPaths
    }
    httpSettings: {
      requireHttps: true
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: easyAuthClientId
          // This tenant only: an object id (the user id) is unique within its tenant.
          openIdIssuer: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
        }
        validation: {
          // v2.0 tokens carry the client id as their audience, v1.0 tokens the application id URI.
          allowedAudiences: [
            easyAuthClientId
            'api://${easyAuthClientId}'
          ]
        }
      }
    }
  }
}

output name string = functionApp.name
output uri string = 'https://${functionApp.properties.defaultHostName}'
