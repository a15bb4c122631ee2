"""The Kubernetes operator: the resource model, pure rendering and conditions, API adapters, handlers."""
