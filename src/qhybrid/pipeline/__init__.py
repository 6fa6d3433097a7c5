"""The run pipeline over a run directory: generate -> execute -> reconstruct -> report.

Each step is one module and one entry point that a local process or a workflow pod
calls (``qhybrid step ...``); ``rundir`` owns the directory's layout and file
formats (written through ``qhybrid.atomic``), ``runner`` and ``worker`` the local process pool.
"""
