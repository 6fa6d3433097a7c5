"""The Pulumi program (``main: infra/``): one ComponentResource per part of the platform.

Components only wire objects built by the pure functions of
``qhybrid.blueprint`` into resources; ``__main__.py`` composes them per stack.
"""
