"""The QPU gateway: one service per cluster that holds provider credentials and meters QPU time.

Workers submit circuits over HTTP with their own bearer tokens; the gateway
queues them durably (SQLite), runs each job at most once on a configured
backend (an emulated device, a noiseless simulator or IBM Quantum through
qiskit-ibm-runtime), and exports Prometheus metrics. Provider tokens never leave
this process: not in logs, errors, results or worker pods.
"""
