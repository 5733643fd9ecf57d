"""The seam where fault injection goes (nothing is injected yet).

MockServer.respond builds the normal ResponsePlan for a request, then hands
it to FaultPolicy.shape(request, plan), whose result is what gets written.
A fault mode is a policy that, for the requests it picks (every n-th, a
fraction, those with a header...), returns a changed plan, e.g.:

  HTTP 500 / 429            return openai_error(500, ...) (add retry-after via extra_headers)
  mid-stream close          plan.abort_after = k
  invalid JSON event        plan.events[i] = b"data: {not json\\n\\n"
  stall                     add seconds to plan.due_s[i:]
  no [DONE]                 drop the last event
  error event               insert an SSE error event
  slow drip                 split events into several with spread due times
  huge body                 pad an event / the body

so the protocol modules and the writer in http.py stay unaware of faults.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .config import MockConfig
from .plan import ResponsePlan

if TYPE_CHECKING:
    from .http import Request


class FaultPolicy:
    """No faults: every plan goes out as built."""

    def __init__(self, config: MockConfig) -> None:
        self.config = config

    def shape(self, request: Request, plan: ResponsePlan) -> ResponsePlan:
        return plan


def policy_for(config: MockConfig) -> FaultPolicy:
    """The policy the config asks for; fault flags will select subclasses here."""
    return FaultPolicy(config)
