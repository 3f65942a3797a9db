"""Orchestration: compile, submit and run locally the Kubeflow pipeline of `pipelines/` (docs/architecture.md).

`steps` holds what each component does, `trainjob` the multi-node GRPO job, `compile`/`submit`/
`local` the `sayo pipeline ...` commands (`cli`). kfp is imported only by the functions that
need it, so the rest of sayo works without the `pipeline` extra.
"""
