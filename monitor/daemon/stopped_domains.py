"""Records of domains that stopped or vanished, kept for the policy's
``hard_reboot_window``: a domain that runs again meanwhile (a destroy
followed by a start, as in Nova's hard reboot) keeps its history, in
particular that its agent answered before.

Kept in memory, not in the domain store: these domains are not monitored.
"""

import logging

from monitor.health import lifecycle

LOG = logging.getLogger(__name__)


class StoppedDomains:

    def __init__(self, policy, store, metrics):
        self.policy = policy
        self.store = store
        self.metrics = metrics
        # (record, when it stopped) by UUID.
        self._kept = {}

    def keep(self, record, now):
        """Remember the record of a domain that stopped at ``now``."""
        if self.policy.hard_reboot_window > 0:
            self._kept[record.uuid] = (record, now)

    def expire(self, now):
        """Forget the records kept for longer than the window."""
        window = self.policy.hard_reboot_window
        for uuid, (_record, since) in list(self._kept.items()):
            if now - since > window:
                del self._kept[uuid]

    def restore(self, uuid, now, why):
        """Take back the record of a domain that stopped within the hard
        reboot window, re-armed and stored; None when there is none."""
        kept = self._kept.pop(uuid, None)
        if kept is None:
            return None
        record, since = kept
        if now - since > self.policy.hard_reboot_window:
            return None
        verdict = self.policy.apply_lifecycle(record, lifecycle.Action.REARM,
                                              now)
        LOG.info('Domain %s (%s) runs again %.0f s after it stopped (%s); '
                 'keeping its history: waiting for its guest agent to '
                 'answer', record.name, record.uuid, now - since, why)
        if verdict.old_state != verdict.new_state:
            self.metrics.state_changed(verdict.old_state, verdict.new_state)
        self.store.put(verdict.record)
        return verdict.record
