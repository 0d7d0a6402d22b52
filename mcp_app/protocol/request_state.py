"""``requestState`` for multi round-trip requests (MCP 2026-07-28, *Basic › Patterns › Multi Round-Trip
Requests*): signed, bound to the caller and the request, and expiring.

In the modern era a handler that needs input (``ctx.elicit()``, ``ctx.sample()``, ``ctx.list_roots()``)
ends its request with an ``InputRequiredResult``; the client retries the same request with the answers
(``inputResponses``) and the ``requestState`` echoed. The handler runs again from the top and finds the
answers it already has. The state carries the answers of the earlier rounds, so that a third round still
knows the first round's answer although the client sends only the second's.

The state is attacker-controlled input that decides what a handler's questions are answered with, so the
specification asks for integrity protection and recommends binding it to the principal, a short expiry and
the originating request. A token is ``base64url(json) "." base64url(HMAC-SHA256)``:

* the JSON holds ``v`` (format version), ``m`` (the method), ``d`` (a digest of the request's salient
  params: everything but ``_meta``, ``inputResponses`` and ``requestState``), ``e`` (expiry, epoch seconds)
  and ``a`` (the answers collected so far, by input key);
* the MAC covers the principal's key as well as the payload, but the key is not in the payload: a state
  presented by another principal fails exactly as a forged one does (``reason: "invalid"``), so a stolen
  state is not confirmed as genuine, and principal keys are never shown to clients.

It is integrity only, not encryption: everything in it but the binding is what the client itself sent.

Verification order: size and shape, signature with the caller's principal (``invalid``), expiry
(``expired``), then method and params (``mismatch``). Every refusal is -32602 with ``data.reason``; the
client recovers by retrying the original request without ``inputResponses`` and ``requestState``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import InvalidParams

#: Request params that are not part of what the state is bound to: the per-request metadata and MRTR's own.
UNBOUND_PARAMS = frozenset({"_meta", "inputResponses", "requestState"})
#: Tokens (and the answers sealed into them) beyond this many characters are refused: the state travels in
#: every retry, and answers are client-supplied.
MAX_STATE_SIZE = 64 * 1024
_FORMAT = 1
_REFUSED = "Invalid or expired requestState: retry the original request without inputResponses and requestState."


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def params_digest(params: Mapping[str, Any]) -> str:
    """A digest of the params a retry must repeat unchanged (name, uri, arguments, ...): canonical JSON of
    everything but :data:`UNBOUND_PARAMS`, so key order and whitespace do not matter."""
    salient = {k: v for k, v in params.items() if k not in UNBOUND_PARAMS}
    canonical = json.dumps(salient, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return _b64encode(hashlib.sha256(canonical.encode("utf-8")).digest())


@dataclass(frozen=True)
class StateBinding:
    """What a state is bound to: who asked (``principal``, the authenticated principal's key) and which
    request (``method`` and :func:`params_digest` of its params)."""

    principal: str
    method: str
    digest: str

    @classmethod
    def of(cls, principal: str, method: str, params: Mapping[str, Any]) -> StateBinding:
        """The binding of a request ``method`` with ``params`` made by ``principal``."""
        return cls(principal=principal, method=method, digest=params_digest(params))


class RequestStateCodec:
    """Seal and open ``requestState`` tokens.

    ``key`` is a secret of at least 16 bytes that every worker shares (derived from ``SECRET_KEY``);
    ``ttl`` how long a state stays valid, in seconds; ``clock`` returns epoch seconds (tests pass their
    own).
    """

    def __init__(self, key: bytes, ttl: float = 600, *, clock: Callable[[], float] = time.time) -> None:
        if len(key) < 16:
            raise ValueError("a requestState key of at least 16 bytes is required")
        if ttl <= 0:
            raise ValueError("the requestState TTL must be positive")
        self._key = key
        self.ttl = ttl
        self._clock = clock

    def _mac(self, principal: str, payload: str) -> str:
        # The principal is MACed, not stored: length-prefixed so that no (principal, payload) pair can be
        # re-split into another.
        principal_bytes = principal.encode("utf-8")
        message = len(principal_bytes).to_bytes(4, "big") + principal_bytes + payload.encode("ascii")
        return _b64encode(hmac.new(self._key, message, hashlib.sha256).digest())

    def seal(self, binding: StateBinding, answers: Mapping[str, dict[str, Any]]) -> str:
        """A token carrying ``answers`` (input key -> the client's result), bound to ``binding``, valid for
        :attr:`ttl` seconds. Raises -32602 when the answers make it larger than :data:`MAX_STATE_SIZE`."""
        state = {
            "v": _FORMAT,
            "m": binding.method,
            "d": binding.digest,
            "e": int(self._clock() + self.ttl),
            "a": dict(answers),
        }
        payload = _b64encode(json.dumps(state, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
        token = f"{payload}.{self._mac(binding.principal, payload)}"
        if len(token) > MAX_STATE_SIZE:
            raise InvalidParams(
                f"The answers given so far are too large to carry in requestState (over {MAX_STATE_SIZE} characters).",
                data={"reason": "too_large"},
            )
        return token

    def open(self, token: object, binding: StateBinding) -> dict[str, dict[str, Any]]:
        """The answers inside ``token`` if it is genuine, was sealed for ``binding.principal``, has not expired
        and belongs to the same method and params; otherwise raise -32602 with ``data.reason`` one of
        ``"invalid"`` (malformed, forged, tampered or another principal's), ``"expired"``, ``"mismatch"``."""
        if not isinstance(token, str) or len(token) > MAX_STATE_SIZE or token.count(".") != 1:
            raise _refused("invalid")
        payload, mac = token.split(".")
        try:
            payload.encode("ascii")
        except UnicodeEncodeError:
            raise _refused("invalid") from None
        if not hmac.compare_digest(mac.encode("ascii", "replace"), self._mac(binding.principal, payload).encode("ascii")):
            raise _refused("invalid")
        try:
            state = json.loads(_b64decode(payload))
        except (ValueError, binascii.Error):
            raise _refused("invalid") from None
        if not _well_formed(state):
            raise _refused("invalid")
        if self._clock() > state["e"]:
            raise _refused("expired")
        if state["m"] != binding.method or state["d"] != binding.digest:
            raise _refused("mismatch")
        return state["a"]


def _well_formed(state: Any) -> bool:
    # Only our own tokens pass the MAC, so this guards against a format change (or a key shared by mistake
    # with another signer), not against clients.
    return (
        isinstance(state, dict)
        and state.get("v") == _FORMAT
        and isinstance(state.get("m"), str)
        and isinstance(state.get("d"), str)
        and isinstance(state.get("e"), int)
        and isinstance(state.get("a"), dict)
        and all(isinstance(k, str) and isinstance(v, dict) for k, v in state["a"].items())
    )


def _refused(reason: str) -> InvalidParams:
    return InvalidParams(_REFUSED, data={"reason": reason})


#: The methods whose requests may end with an ``InputRequiredResult`` (*MRTR › Supported Requests*).
MRTR_METHODS = frozenset({"tools/call", "prompts/get", "resources/read"})
#: What each kind of input request is answered with: the members the answer must have (the schema's
#: required members of ElicitResult, CreateMessageResult and ListRootsResult).
_ANSWER_MEMBERS: dict[str, tuple[str, ...]] = {
    "elicitation/create": ("action",),
    "sampling/createMessage": ("role", "content", "model"),
    "roots/list": ("roots",),
}
_ELICIT_ACTIONS = ("accept", "decline", "cancel")
#: Default input keys by method: ``elicitation-1``, ``sampling-2``, ``roots-1``, ... in call order.
_KEY_PREFIXES = {"elicitation/create": "elicitation", "sampling/createMessage": "sampling", "roots/list": "roots"}


def read_input_responses(params: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``params.inputResponses`` as a dict of answers (empty when absent); -32602 when present but not an
    object of objects (``null`` included: *MRTR › Error Handling* asks for a JSON-RPC error on malformed
    InputResponses, never a complete result)."""
    if "inputResponses" not in params:
        return {}
    responses = params["inputResponses"]
    if not isinstance(responses, dict):
        raise InvalidParams("params.inputResponses must be an object mapping input keys to the client's results.")
    bad = sorted(key for key, value in responses.items() if not isinstance(value, dict))
    if bad:
        shown = ", ".join(repr(key[:40]) for key in bad[:5])
        raise InvalidParams(f"params.inputResponses: each answer must be an object (the client's result); {shown} is not.")
    return responses


class InputRound:
    """One run of a modern request's handler: the answers it can be given, and the input it asks for.

    ``known`` are the answers of earlier rounds (from a verified ``requestState``), ``responses`` this
    retry's ``inputResponses``. A known answer wins over a response for the same key (an answer, once
    given, stays as the handler first saw it); responses for keys nobody asks for are ignored. Responses
    are accepted without a state too (a client may answer before it is asked; the answers are its own
    either way, and nothing the server decided travels in the state).

    The handler's ``ctx.elicit()``, ``ctx.sample()`` and ``ctx.list_roots()`` call :meth:`answer` and, when
    there is none, :meth:`ask`; when the handler ends with :class:`~mcp_app.protocol.errors.InputRequired`
    the dispatcher answers :attr:`asked` and seals :meth:`answers_to_keep` into the next state.
    """

    def __init__(
        self, known: Mapping[str, dict[str, Any]] | None = None, responses: Mapping[str, dict[str, Any]] | None = None
    ) -> None:
        self.known: dict[str, dict[str, Any]] = dict(known or {})
        self.responses: dict[str, dict[str, Any]] = dict(responses or {})
        #: Input requests made in this run, by key (``{"method": ..., "params": ...}``), in call order.
        self.asked: dict[str, dict[str, Any]] = {}
        self._used: dict[str, dict[str, Any]] = {}
        self._counts: dict[str, int] = {}

    def next_key(self, method: str) -> str:
        """The default key of the next ``method`` input in this run: ``elicitation-1``, ``elicitation-2``, ...
        The same code asks in the same order on every retry, so the keys line up with the answers."""
        count = self._counts.get(method, 0) + 1
        self._counts[method] = count
        return f"{_KEY_PREFIXES[method]}-{count}"

    def answer(self, key: str, method: str) -> dict[str, Any] | None:
        """The client's answer for ``key`` (None: not answered yet); -32602 when the answer is not a
        result of ``method``'s kind."""
        value = self.known.get(key)
        if value is None:
            value = self.responses.get(key)
        if value is None:
            return None
        missing = [name for name in _ANSWER_MEMBERS[method] if name not in value]
        if missing or (method == "elicitation/create" and value.get("action") not in _ELICIT_ACTIONS):
            raise InvalidParams(
                f"params.inputResponses[{key[:40]!r}] is not a valid answer to {method}"
                + (f": it lacks {', '.join(missing)}." if missing else ": action must be accept, decline or cancel.")
            )
        if method == "roots/list" and not isinstance(value.get("roots"), list):
            raise InvalidParams(f"params.inputResponses[{key[:40]!r}]: roots must be an array.")
        self._used[key] = value
        return value

    def ask(self, key: str, method: str, params: dict[str, Any]) -> None:
        """Record an input request; a key used twice in one run for different requests is a programming
        error (keys must be unique within the request)."""
        request = {"method": method, "params": params}
        previous = self.asked.get(key)
        if previous is not None and previous != request:
            raise ValueError(f"input key {key!r} is used for two different input requests in one request")
        self.asked[key] = request

    def answers_to_keep(self) -> dict[str, dict[str, Any]]:
        """What the next ``requestState`` carries: the earlier rounds' answers and those used in this run."""
        return {**self.known, **self._used}
