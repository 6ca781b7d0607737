"""Analysis pipelines: each turns one source resource into a typed PipelineResult."""
