"""The KV memory: the cache contract, the pure planner, slot storage, the cache and its policies."""
