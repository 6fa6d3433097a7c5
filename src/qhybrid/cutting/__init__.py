"""Circuit cutting itself: the problem, its plan of unique subexperiments, and reconstruction.

Pure functions over circuits, observables and plans; nothing here reads or writes
a run directory, knows a run's spec or picks a process. Modules follow the data:
problem -> plan (with fingerprint, policies) -> (backends run them, via deferred)
-> reconstruct, and exact for the reference value.
"""
