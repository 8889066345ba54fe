"""The causal Wan model: its block-causal forward, loading, checkpoints, LoRA and text encoder."""
