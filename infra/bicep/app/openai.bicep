// Azure OpenAI: one account reached with Entra ID only (a custom subdomain is required for token auth), with the
// chat and embedding deployments the app names in AZURE_OPENAI_DEPLOYMENT and AZURE_OPENAI_EMBEDDING_DEPLOYMENT.
param name string
param location string = resourceGroup().location
param tags object = {}

param chatModelName string
param chatModelVersion string
@allowed(['Standard', 'GlobalStandard', 'DataZoneStandard'])
param chatDeploymentSkuName string = 'GlobalStandard'
param chatDeploymentCapacity int = 30

param embeddingModelName string
param embeddingModelVersion string
// GlobalStandard: offered in far more regions than the regional Standard (main.bicep says where that is written).
@allowed(['Standard', 'GlobalStandard', 'DataZoneStandard'])
param embeddingDeploymentSkuName string = 'GlobalStandard'
param embeddingDeploymentCapacity int = 30

// Each deployment is named after its model, as the app's defaults expect.
var deployments = [
  {
    name: chatModelName
    model: {
      format: 'OpenAI'
      name: chatModelName
      version: chatModelVersion
    }
    sku: {
      name: chatDeploymentSkuName
      capacity: chatDeploymentCapacity
    }
  }
  {
    name: embeddingModelName
    model: {
      format: 'OpenAI'
      name: embeddingModelName
      version: embeddingModelVersion
    }
    sku: {
      name: embeddingDeploymentSkuName
      capacity: embeddingDeploymentCapacity
    }
  }
]

resource account 'Microsoft.CognitiveServices/accounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'OpenAI'
  sku: {
    name: 'S0'
  }
  properties: {
    customSubDomainName: name
    disableLocalAuth: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
    }
  }
}

// One at a time: the service rejects concurrent deployment operations on one account.
@batchSize(1)
resource modelDeployments 'Microsoft.CognitiveServices/accounts/deployments@2023-05-01' = [
  for deployment in deployments: {
    parent: account
    name: deployment.name
    sku: deployment.sku
    properties: {
      model: deployment.model
      versionUpgradeOption: 'OnceCurrentVersionExpired'
    }
  }
]

output id string = account.id
output name string = account.name
output endpoint string = account.properties.endpoint
output chatDeploymentName string = modelDeployments[0].name
output embeddingDeploymentName string = modelDeployments[1].name
