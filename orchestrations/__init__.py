"""The Durable side of the app: entities, orchestrators, activities and the cleanup timer, as blueprints."""

from orchestrations.activities import bp as activities
from orchestrations.cleanup import bp as cleanup
from orchestrations.entities import bp as entities
from orchestrations.workflows import bp as workflows

blueprints = (entities, workflows, activities, cleanup)
