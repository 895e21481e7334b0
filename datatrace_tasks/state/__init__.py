"""The state layer: units, the store's tables, the memory cache and the reporter."""
