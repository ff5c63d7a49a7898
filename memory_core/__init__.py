"""Memory service core: the domain, its services and the adapters behind its ports."""
