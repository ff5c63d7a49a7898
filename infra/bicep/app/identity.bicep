// The user-assigned identity of the function app: host storage, the deployment container, Application Insights,
// Cosmos DB and Azure OpenAI all accept it (roles in rbac.bicep); the app code finds it through AZURE_CLIENT_ID.
param name string
param location string = resourceGroup().location
param tags object = {}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
output principalId string = identity.properties.principalId
output clientId string = identity.properties.clientId
