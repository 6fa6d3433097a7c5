"""Experiment tracking and object storage: runs as MLflow runs, artifacts in an S3 bucket."""
