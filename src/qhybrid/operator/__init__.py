"""The QuantumJob custom resource and its operator: ``kubectl apply`` runs a cutting job."""
