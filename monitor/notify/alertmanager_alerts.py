"""What an Alertmanager is sent: the alert of a failed guest, and the set
of alerts still active, kept on disk.

Plain values and a small file, no HTTP: ``alertmanager`` POSTs what this
module builds.

An alert is one failed guest: its labels say which (host, domain, uuid)
and why in a word (``reason``), its annotations say the rest in the
operator's words. Alertmanager resolves an alert that is not sent again
before its ``endsAt``, so an active alert is re-posted every
``repost_interval`` with ``endsAt`` four intervals ahead, as Prometheus
does: a monitor that stops (or a host that dies) lets its alerts resolve
by themselves four intervals later, and a re-post from a monitor that
comes back fires them again.

The active set survives a restart (a private JSON file in the state
directory, replaced whole on every change): an alert the monitor raised
before a restart is still re-posted, and resolved, after it.
"""

from __future__ import annotations

import datetime
import json
import logging
import os

from monitor import masking
from monitor.health import failure_reasons
from monitor.health import probes
from monitor.store import state_dir

LOG = logging.getLogger(__name__)

ALERTNAME = 'GuestHealthMonitorGuestFailed'
# A probe's failure on a guest that answers its pings: an application
# incident, routed apart from a dead guest.
APPLICATION_ALERTNAME = 'GuestHealthMonitorApplicationFailed'
SEVERITY = 'critical'

FILE_NAME = 'alertmanager-alerts.json'
_FILE_VERSION = 1

# Endless alerts are not kept: one per domain at most is firing (a new
# failure of a domain replaces its former alert), ended ones only until
# every Alertmanager has them or their own endsAt passed.
MAX_ALERTS = 10000

# Alertmanager's limits are generous; an annotation is for a human to
# read, and a guest's words in it are cut short.
_MAX_ANNOTATION = 1000

# How many re-post intervals an alert stays valid without a re-post:
# Prometheus's factor, so one or two lost re-posts never resolve it.
VALIDITY_INTERVALS = 4

def reason_label(text, details=None):
    """The low-cardinality ``reason`` label of a failure: the word of
    ``guest_failures_total`` (``failure_reasons``), so that routes,
    silences and the metrics name a failure alike."""
    return failure_reasons.reason_of(text, details=details)


def rfc3339(epoch_seconds):
    moment = datetime.datetime.fromtimestamp(epoch_seconds,
                                             datetime.timezone.utc)
    return moment.strftime('%Y-%m-%dT%H:%M:%SZ')


def epoch_of(generated_time):
    """Epoch seconds of a notification's ``generated_time``."""
    moment = datetime.datetime.strptime(generated_time, '%Y-%m-%dT%H:%M:%SZ')
    return moment.replace(tzinfo=datetime.timezone.utc).timestamp()


def _text(value, limit=_MAX_ANNOTATION):
    # A guest's or a receiver's words: no control character reaches a
    # terminal running amtool, and nothing is endless.
    return masking.outside(str(value), limit)


def _evidence_text(details):
    paths = []
    for ref in details.get('evidence') or ():
        if isinstance(ref, dict) and ref.get('path'):
            paths.append('%s: %s' % (ref.get('kind', 'evidence'),
                                     ref['path']))
    return _text('; '.join(paths)) if paths else ''


def _recovery_text(details):
    recovery = details.get('recovery')
    if not isinstance(recovery, dict) or not recovery.get('action'):
        return ''
    text = '%s: %s' % (recovery.get('action'), recovery.get('result'))
    if recovery.get('detail'):
        text += ' (%s)' % recovery['detail']
    return _text(text)


def alert_of(notification):
    """The alert (a dict of the API's ``postableAlert``) of a failure
    notification, without ``endsAt``."""
    details = notification.details or {}
    reason = details.get('reason') or 'failed'
    application = details.get(probes.INCIDENT_KEY) == \
        probes.INCIDENT_APPLICATION
    labels = {
        'alertname': APPLICATION_ALERTNAME if application else ALERTNAME,
        'severity': SEVERITY,
        'host': notification.hostname,
        'domain': notification.domain_name,
        'uuid': notification.instance_uuid,
        'reason': reason_label(reason, details),
    }
    annotations = {
        'summary': _text('Guest %s on %s failed: %s' % (
            notification.domain_name, notification.hostname, reason)),
        'description': _text(
            'Domain %s (%s) on host %s was found failed at %s: %s.' % (
                notification.domain_name, notification.instance_uuid,
                notification.hostname, notification.generated_time,
                reason)),
        'notification_id': notification.id,
    }
    recovery = _recovery_text(details)
    if recovery:
        annotations['recovery'] = recovery
    evidence = _evidence_text(details)
    if evidence:
        annotations['evidence'] = evidence
    return {'labels': labels, 'annotations': annotations,
            'startsAt': notification.generated_time}


class ActiveAlerts:
    """The alerts this monitor raised and has not seen every Alertmanager
    end, by the id of the failure notification they were made of.

    Each entry: ``alert`` (labels, annotations, startsAt), ``domain``
    (its uuid), ``ends_at`` (epoch s, None while firing), ``owed``
    (the URLs that have not taken its end yet) and ``valid_until``
    (epoch s: the endsAt the Alertmanagers were last given, after which
    they resolve it by themselves).
    """

    def __init__(self, path=None):
        self.path = path
        self._alerts = {}
        if path is not None:
            self._alerts = _load(path)

    def __len__(self):
        return len(self._alerts)

    def __contains__(self, failure_id):
        return failure_id in self._alerts

    def firing(self):
        return {k: v for k, v in self._alerts.items()
                if v['ends_at'] is None}

    def ended(self):
        return {k: v for k, v in self._alerts.items()
                if v['ends_at'] is not None}

    def get(self, failure_id):
        return self._alerts.get(failure_id)

    def add(self, failure_id, domain, alert, valid_until, now, urls):
        """Start ``alert``; a former alert of the same domain ends now:
        the new failure replaces it (one with the same labels is the same
        Alertmanager alert, and is only replaced)."""
        for key, entry in list(self._alerts.items()):
            if entry['domain'] != domain or key == failure_id:
                continue
            if entry['alert']['labels'] == alert['labels']:
                del self._alerts[key]
            elif entry['ends_at'] is None:
                self._end(entry, now, urls)
        self._alerts[failure_id] = {'alert': alert, 'domain': domain,
                                    'ends_at': None, 'owed': [],
                                    'valid_until': valid_until}
        self._bound()
        self._save()

    def end(self, failure_id, at, urls):
        """The alert's incident ended at ``at``: every URL is owed its
        end."""
        entry = self._alerts.get(failure_id)
        if entry is not None:
            self._end(entry, at, urls)
            self._save()
        return entry

    @staticmethod
    def _end(entry, at, urls):
        entry['ends_at'] = at
        entry['owed'] = list(urls)

    def refreshed(self, failure_ids, valid_until):
        """The firing alerts ``failure_ids`` were re-posted."""
        for key in failure_ids:
            entry = self._alerts.get(key)
            if entry is not None and entry['ends_at'] is None:
                entry['valid_until'] = max(entry['valid_until'], valid_until)
        self._save()

    def settled(self, failure_id, url):
        """``url`` took the end of ``failure_id``'s alert; forgotten once
        every URL has."""
        entry = self._alerts.get(failure_id)
        if entry is None or entry['ends_at'] is None:
            return
        if url in entry['owed']:
            entry['owed'].remove(url)
        if not entry['owed']:
            del self._alerts[failure_id]
        self._save()

    def expire(self, now):
        """Forget ended alerts whose endsAt passed: an Alertmanager that
        did not take their end has resolved them by itself."""
        gone = [k for k, v in self._alerts.items()
                if v['ends_at'] is not None and v['valid_until'] <= now]
        for key in gone:
            del self._alerts[key]
        if gone:
            self._save()
        return len(gone)

    def _bound(self):
        # Oldest ended first, then oldest firing: far beyond any host.
        excess = len(self._alerts) - MAX_ALERTS
        if excess <= 0:
            return
        order = sorted(self._alerts.items(),
                       key=lambda kv: (kv[1]['ends_at'] is None,
                                       kv[1]['alert']['startsAt']))
        for key, entry in order[:excess]:
            LOG.warning('Too many Alertmanager alerts kept (%d): no longer '
                        're-posting the one of domain %s (%s)', MAX_ALERTS,
                        entry['alert']['labels'].get('domain'),
                        entry['domain'])
            del self._alerts[key]

    def _save(self):
        if self.path is None:
            return
        data = json.dumps({'version': _FILE_VERSION, 'alerts': self._alerts},
                          sort_keys=True).encode('utf-8')
        try:
            state_dir.write_private(self.path, data)
        except OSError as exc:
            # Kept in memory; the next change tries again. A restart
            # meanwhile loses at most what changed since: those alerts
            # resolve by themselves at their endsAt.
            LOG.error('Cannot save the active Alertmanager alerts to %s: '
                      '%s', self.path, exc.strerror or exc)


def _load(path):
    try:
        with open(path, 'rb') as f:
            document = json.loads(f.read().decode('utf-8'))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        LOG.error('Cannot read the active Alertmanager alerts from %s (%s);'
                  ' starting without them: they resolve by themselves at '
                  'their endsAt', path, exc)
        return {}
    alerts = document.get('alerts') if isinstance(document, dict) else None
    if not isinstance(alerts, dict):
        LOG.error('%s holds no active Alertmanager alerts; starting without '
                  'them', path)
        return {}
    return {k: v for k, v in alerts.items() if _well_formed(v)}


def _well_formed(entry):
    return (isinstance(entry, dict)
            and isinstance(entry.get('alert'), dict)
            and isinstance(entry['alert'].get('labels'), dict)
            and isinstance(entry.get('domain'), str)
            and isinstance(entry.get('owed'), list)
            and isinstance(entry.get('valid_until'), (int, float))
            and (entry.get('ends_at') is None
                 or isinstance(entry.get('ends_at'), (int, float))))


def state_file(state_path):
    return os.path.join(state_path, FILE_NAME)
