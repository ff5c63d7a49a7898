// Cosmos DB for NoSQL, serverless, Entra ID only. The app's identity has a data-plane role only (rbac.bicep), which
// cannot create databases or containers, so they are all created here, with the policies that
// memory_core/adapters/cosmos.py (CosmosStore._container_policies) would give them.
param accountName string
param location string = resourceGroup().location
param tags object = {}

@description('COSMOS_DATABASE_NAME')
param databaseName string

@description('The three containers: COSMOS_INTERACTIONS_CONTAINER, COSMOS_SUMMARIES_CONTAINER, COSMOS_INSIGHTS_CONTAINER.')
param containerNames string[]

@description('EMBEDDING_DIMENSIONS. The vector policy cannot change once a container exists.')
@minValue(1)
param embeddingDimensions int

@allowed(['quantizedFlat', 'diskANN'])
param vectorIndexType string = 'quantizedFlat'

// Learn, "Consistency levels in Azure Cosmos DB": session consistency guarantees read-your-writes within one client
// session only; the app's HTTP functions run on many instances (each its own client), and a context request may land
// on another instance than the store it follows. Strong (available for single-region accounts) reads the latest
// committed write from any of them, at twice the RUs of a read.
@allowed(['Strong', 'BoundedStaleness', 'Session', 'ConsistentPrefix', 'Eventual'])
param consistencyLevel string = 'Strong'

// API version 2025-10-15: a stable version whose IndexingPolicy defines fullTextIndexes (Azure/azure-resource-manager-
// schemas, schemas/2025-10-15/Microsoft.DocumentDB.json). 2025-04-15 does not: Bicep warns BCP037, and the resource
// provider need not honour a property its API version does not define. Without the full-text index the adapter's
// FullTextScore queries still run, but cost more RUs and take longer (Learn, "Full-text search in Azure Cosmos DB for
// NoSQL"). tests/infra validates every body below against the schema of its API version.

// Every document, query and write of the service is scoped to one user's partition.
var partitionKeyPath = '/user_id'
var vectorPath = '/embedding'
// Full text searches a turn's text and its date words ("8 May 2023", memory_core.text.date_words).
var fullTextPath = '/text'
var dateWordsPath = '/when_text'

resource account 'Microsoft.DocumentDB/databaseAccounts@2025-10-15' = {
  name: accountName
  location: location
  tags: tags
  kind: 'GlobalDocumentDB'
  properties: {
    databaseAccountOfferType: 'Standard'
    consistencyPolicy: {
      defaultConsistencyLevel: consistencyLevel
    }
    locations: [
      {
        locationName: location
        failoverPriority: 0
        isZoneRedundant: false
      }
    ]
    capabilities: [
      { name: 'EnableServerless' }
      { name: 'EnableNoSQLVectorSearch' }
      { name: 'EnableNoSQLFullTextSearch' }
    ]
    disableLocalAuth: true
    disableKeyBasedMetadataWriteAccess: true
    minimalTlsVersion: 'Tls12'
    publicNetworkAccess: 'Enabled'
  }
}

// Serverless: no throughput options on the database or the containers.
resource database 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases@2025-10-15' = {
  parent: account
  name: databaseName
  properties: {
    resource: {
      id: databaseName
    }
  }
}

resource containers 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers@2025-10-15' = [
  for name in containerNames: {
    parent: database
    name: name
    properties: {
      resource: {
        id: name
        partitionKey: {
          paths: [
            partitionKeyPath
          ]
          kind: 'Hash'
          version: 2
        }
        indexingPolicy: {
          indexingMode: 'consistent'
          automatic: true
          includedPaths: [
            { path: '/*' }
          ]
          // The vector array is indexed by the vector index only, never by the range index.
          excludedPaths: [
            { path: '/"_etag"/?' }
            { path: '${vectorPath}/*' }
          ]
          // Newest first with a stable tie-break (summaries, insights): a two-property ORDER BY needs this index.
          compositeIndexes: [
            [
              { path: '/ts', order: 'descending' }
              { path: '/id', order: 'ascending' }
            ]
          ]
          vectorIndexes: [
            { path: vectorPath, type: vectorIndexType }
          ]
          fullTextIndexes: [
            { path: fullTextPath }
            { path: dateWordsPath }
          ]
        }
        vectorEmbeddingPolicy: {
          vectorEmbeddings: [
            {
              path: vectorPath
              dataType: 'float32'
              distanceFunction: 'cosine'
              dimensions: embeddingDimensions
            }
          ]
        }
        fullTextPolicy: {
          defaultLanguage: 'en-US'
          fullTextPaths: [
            { path: fullTextPath, language: 'en-US' }
            { path: dateWordsPath, language: 'en-US' }
          ]
        }
      }
    }
  }
]

output accountName string = account.name
output endpoint string = account.properties.documentEndpoint
output databaseName string = database.name
output containerNames string[] = [for (name, i) in containerNames: containers[i].name]
