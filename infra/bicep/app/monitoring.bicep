// Log Analytics and workspace-based Application Insights. Local (instrumentation-key) ingestion is disabled, so
// telemetry must come with an Entra ID token: the app's identity has Monitoring Metrics Publisher (rbac.bicep) and
// the app sets APPLICATIONINSIGHTS_AUTHENTICATION_STRING (api.bicep).
param logAnalyticsName string
param applicationInsightsName string
param location string = resourceGroup().location
param tags object = {}

@description('Days of retention of the Log Analytics workspace.')
param retentionInDays int = 30

resource logAnalytics 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
  }
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: applicationInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logAnalytics.id
    DisableLocalAuth: true
  }
}

output logAnalyticsId string = logAnalytics.id
output applicationInsightsName string = applicationInsights.name
// Not a secret: it names the resource, and ingestion with it alone is refused (DisableLocalAuth).
output connectionString string = applicationInsights.properties.ConnectionString
