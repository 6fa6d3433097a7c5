"""Game-day probes and actions for Chaos Toolkit experiments (installed as ``qhybrid_chaos``).

Every function an experiment names is a plain function listed in its module's
``__all__``; a probe or action that finds the system in the wrong state raises
:class:`chaoslib.exceptions.ActivityFailed`. Experiments share state through a
*workspace* directory (configuration key ``workspace``): the processes they
started, the runs they registered, and a ledger of faults and recoveries that
``qhybrid gameday`` turns into its summary and timeline.
"""
