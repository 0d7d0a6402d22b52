"""What this app tunes in daphne, when it runs under daphne (nothing under any other server).

Twisted's ``Request``, which daphne's ``WebRequest`` is, reads every POST body whose Content-Type is an HTML
form (URL-encoded or multipart) into ``request.args``, and to decide so parses every POST's Content-Type
with the :mod:`email` package. Daphne never reads ``request.args``: it hands the raw body to the
application, which parses what it needs (Django's request does). So that work is waste, an eighth of
daphne's CPU per MCP call (measured: 18 % more tools/call per second with it skipped), and a multipart
upload of any size sent to any URL is parsed in memory before an application could refuse it. Twisted 25.5
takes ``parsePOSTFormSubmission=False`` to skip it; daphne does not pass it, so :func:`skip_form_parsing`
makes its request class one that does.
"""

from __future__ import annotations

import inspect
import sys
from typing import Any

#: Marks the request class this module made (so it is made once, whoever calls first).
_MARK = "_mcp_app_skips_form_parsing"


def skip_form_parsing() -> bool:
    """Make daphne's requests skip Twisted's form parsing (see the module's docstring); True when it was
    done now. Nothing happens when the process does not run daphne (its HTTP protocol is not loaded), when
    Twisted is older than 25.5 (it always parses), or when it was done already."""
    module = sys.modules.get("daphne.http_protocol")
    if module is None:
        return False
    current = module.WebRequest
    if getattr(current, _MARK, False):
        return False
    from twisted.web import http  # loaded already: daphne's protocol imports it

    if "parsePOSTFormSubmission" not in inspect.signature(http.Request.__init__).parameters:
        return False

    class WebRequest(current):  # type: ignore[misc, valid-type]
        """Daphne's request, with Twisted's parsing of form bodies into ``request.args`` off."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("parsePOSTFormSubmission", False)
            super().__init__(*args, **kwargs)

    setattr(WebRequest, _MARK, True)
    # daphne's HTTPFactory.buildProtocol reads this module attribute for every connection it accepts.
    module.WebRequest = WebRequest
    return True
