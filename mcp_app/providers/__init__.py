"""Providers: what supplies the tools, resources and prompts the protocol layer serves.

A provider implements :class:`mcp_app.protocol.provider.Provider`: the dispatcher asks it for lists,
calls tools, reads resources and renders prompts, always with the request's
:class:`~mcp_app.protocol.context.RequestContext` (the caller, the cursor codec, progress and logging).
Providers sit between the protocol layer and Django: they import the models, never a transport, the
runtime objects or the sessions store; what they need from above arrives with the request.

- :mod:`mcp_app.providers.code`: the decorator registry (``@tool``, ``@resource``, ``@prompt``), the
  one place that looks tools up and matches resource URIs and templates.
- :mod:`mcp_app.providers.managed`: the code registry as the site's admins configure it in the ORM
  (the default provider, with the audit log of tool calls).
- :mod:`mcp_app.providers.exposures`: model querysets exposed as resources and data tools.
- :mod:`mcp_app.providers.hooks`: the validation the models' ``clean()`` runs, registered into
  :data:`mcp_app.models.clean_hooks` (the models cannot import the providers, which build on them).

This package re-exports nothing: ``from mcp_app import tool`` must stay importable before Django's
app registry is ready, so only :mod:`~mcp_app.providers.code` is loaded that early.
"""
