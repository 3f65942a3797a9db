"""Which Kubernetes secrets every sayo pod reads, and as which environment variables.

One table for the pipeline's steps (`pipeline.with_secrets`) and the multi-node GRPO job's
nodes (`trainjob`), so both see the same credentials under the same names; the secrets'
templates are in `infra/k8s/secrets/`. Only the names of secrets and keys appear in the compiled
pipeline and in the job spec, never a value.
"""

# secret name -> {key in the secret: environment variable}
SECRET_ENV: dict[str, dict[str, str]] = {
    "sayo-mlflow": {
        "MLFLOW_TRACKING_URI": "MLFLOW_TRACKING_URI",
        "MLFLOW_TRACKING_USERNAME": "MLFLOW_TRACKING_USERNAME",
        "MLFLOW_TRACKING_PASSWORD": "MLFLOW_TRACKING_PASSWORD",
    },
    "sayo-s3": {
        "AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY",
        "AWS_ENDPOINT_URL": "AWS_ENDPOINT_URL",
        "MLFLOW_S3_ENDPOINT_URL": "MLFLOW_S3_ENDPOINT_URL",
    },
}
