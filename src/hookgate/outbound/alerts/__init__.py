"""Alerts: signed operational webhooks about hookgate itself, through its own outbox.

- ``alerter``: the Alerter, which queues alerts as messages and evaluates on its interval;
- ``watch``: the destinations and sources the rules watch, fed from ``hookgate.metrics``'
  tallies;
- ``rules``: each condition as a pure state machine that says when it starts and ends.

Other modules import ``from hookgate.outbound.alerts import Alerter``.
"""

from __future__ import annotations

from hookgate.outbound.alerts.alerter import Alerter

__all__ = ["Alerter"]
