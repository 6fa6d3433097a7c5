"""The semantic result cache: canonical forms of subexperiments, and the stores that keep their results."""
