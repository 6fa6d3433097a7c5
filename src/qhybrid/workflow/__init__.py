"""The cutting workflow on Argo Workflows and Kueue: batching, Hera build, checks, local replay, submit."""
