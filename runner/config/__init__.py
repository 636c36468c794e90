"""Agent files: YAML in, frozen typed objects out."""
