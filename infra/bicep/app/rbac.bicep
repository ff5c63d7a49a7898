// Every data-plane role the app's identity needs, each on the one resource it concerns, and the same roles for the
// deploying user (principalId from azd) so that a developer can run against the same resources with their own
// Entra ID sign-in. These roles replace every key and connection string the resources would otherwise hand out.
param storageAccountName string
param applicationInsightsName string
param cosmosAccountName string
param openAiAccountName string

@description('Principal id of the function app\'s user-assigned identity.')
param appPrincipalId string

@description('Object id of the deploying user; empty skips the user\'s assignments.')
param userPrincipalId string = ''

@allowed(['User', 'ServicePrincipal'])
param userPrincipalType string = 'User'

var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
  cognitiveServicesOpenAIUser: '5e0bd9bd-7b93-4f28-af87-19fc36ad61bd'
}
// Cosmos DB Built-in Data Contributor: a Cosmos data-plane role (sqlRoleDefinitions), not an Azure RBAC role.
var cosmosDataContributorRoleId = '00000000-0000-0000-0000-000000000002'

// Host storage: blobs (host keys, timers, Durable leases and large messages, the Flex deployment package), queues and
// tables (the Durable task hub).
var storageRoleIds = [
  roles.storageBlobDataOwner
  roles.storageQueueDataContributor
  roles.storageTableDataContributor
]

var principals = concat(
  [
    { id: appPrincipalId, type: 'ServicePrincipal' }
  ],
  empty(userPrincipalId) ? [] : [
    { id: userPrincipalId, type: userPrincipalType }
  ]
)

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource cosmos 'Microsoft.DocumentDB/databaseAccounts@2025-10-15' existing = {
  name: cosmosAccountName
}

resource openAi 'Microsoft.CognitiveServices/accounts@2023-05-01' existing = {
  name: openAiAccountName
}

// Every (principal, storage role) pair; Bicep has no nested loops, so one index walks the product.
var storageAssignments = [
  for i in range(0, length(principals) * length(storageRoleIds)): {
    principal: principals[i / length(storageRoleIds)]
    roleId: storageRoleIds[i % length(storageRoleIds)]
  }
]

// principalType is set so that a just-created identity is not looked up in Entra ID (replication delay).
resource storageRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for assignment in storageAssignments: {
    name: guid(storage.id, assignment.principal.id, assignment.roleId)
    scope: storage
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', assignment.roleId)
      principalId: assignment.principal.id
      principalType: assignment.principal.type
    }
  }
]

resource monitoringRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for principal in principals: {
    name: guid(applicationInsights.id, principal.id, roles.monitoringMetricsPublisher)
    scope: applicationInsights
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
      principalId: principal.id
      principalType: principal.type
    }
  }
]

resource openAiRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for principal in principals: {
    name: guid(openAi.id, principal.id, roles.cognitiveServicesOpenAIUser)
    scope: openAi
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.cognitiveServicesOpenAIUser)
      principalId: principal.id
      principalType: principal.type
    }
  }
]

// Data plane only: read and write items, read metadata. Databases and containers are created by db.bicep.
resource cosmosRoles 'Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments@2025-10-15' = [
  for principal in principals: {
    parent: cosmos
    name: guid(cosmos.id, principal.id, cosmosDataContributorRoleId)
    properties: {
      roleDefinitionId: '${cosmos.id}/sqlRoleDefinitions/${cosmosDataContributorRoleId}'
      principalId: principal.id
      scope: cosmos.id
    }
  }
]
