"""The rollout: chunk-by-chunk sampling, streaming video decode and batch sharding."""
