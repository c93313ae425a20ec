"""What a domain's XML tells the standalone mode: its own monitoring
settings, and where its evidence can be found.

Per-domain settings live in libvirt domain metadata, namespace
``urn:guest-health-monitor:1``, element ``<monitor/>``::

    virsh metadata DOMAIN --uri urn:guest-health-monitor:1 --key ghm \\
        --set '<monitor enabled="no" failure_threshold="5" action="reset"/>'

Attributes, each optional: ``enabled`` (yes/no), ``failure_threshold``
(an integer >= 1), ``action`` (none/reset/restart), ``application_action``
(none/reset/restart: what an application failure does). Children, each
optional: up to ``probes.MAX_PROBES`` ``<probe/>`` elements (attributes
of ``probes.probe_from_attributes``; an exec probe's arguments as
``<arg>`` children, in order)::

    <monitor application_action="reset">
      <probe name="db" kind="exec" path="/usr/local/bin/check-db">
        <arg>--quick</arg>
      </probe>
      <probe name="app" kind="heartbeat" file="/run/app.heartbeat"
             max_age="30"/>
    </monitor>

A domain that declares probes has these instead of the configured ones
([probes] probe). An element that is not
exactly that (unknown attribute, bad value, not XML) is ignored as a whole
and the caller logs the returned error once: a typo such as
``enable="no"`` must be seen, and half of a broken element is no safer
than none of it.

Only the element's own attributes count: unprefixed ones, or ones in its
namespace. An attribute of another namespace (``x:enabled="no"``) belongs
to someone else and is ignored. A value holding control characters (an
``&#10;`` would forge a log line) or longer than ``MAX_VALUE_CHARS`` is
refused; the error quotes it escaped and cut short, as it is outside text.

Pure code: the text comes from the libvirt edge.
"""

from __future__ import annotations

import typing

from lxml import etree

from monitor import masking
from monitor.health import probes as probes_mod
from monitor.health import recovery_policy as recovery

NAMESPACE = 'urn:guest-health-monitor:1'
ELEMENT = 'monitor'
# The prefix libvirt stores the element under (virsh --key).
KEY = 'ghm'

_YES_NO = {'yes': True, 'no': False}
_ATTRIBUTES = ('enabled', 'failure_threshold', 'action',
               'application_action')
PROBE = 'probe'
ARG = 'arg'
# A threshold beyond this is a typo, not a wish: at a 10 s interval it is
# more than a day of silence.
MAX_FAILURE_THRESHOLD = 10000
# More than any valid element can need; bounds what is parsed.
MAX_METADATA_CHARS = 4096
# More than any valid value can need.
MAX_VALUE_CHARS = 64
# How much of a refused name or value an error quotes.
_QUOTED_CHARS = 80

# The project's safe parser settings (see domain_xml): domain XML comes
# from libvirt, but nothing gives a parser a reason to fetch or expand.
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True,
                          huge_tree=False)


class DomainSettings(typing.NamedTuple):
    """A domain's own settings; None means "the configured default"."""

    enabled: bool = True
    failure_threshold: typing.Optional[int] = None
    action: typing.Optional[str] = None
    application_action: typing.Optional[str] = None
    # The domain's own probes (probes.ProbeSpec); None: the configured
    # ones.
    probes: typing.Optional[tuple] = None


DEFAULTS = DomainSettings()


class Parsed(typing.NamedTuple):
    settings: DomainSettings
    # Why the element was ignored, for the caller to log once; None when
    # it was read (or absent).
    error: typing.Optional[str]


def _fromstring(text):
    if isinstance(text, str):
        # lxml refuses str input that carries an encoding declaration.
        text = text.encode('utf-8')
    root = etree.fromstring(text, parser=_PARSER)
    if root is None:
        raise etree.XMLSyntaxError('empty document', None, 0, 0)
    return root


def _local_name(element):
    tag = element.tag
    if not isinstance(tag, str):
        return None
    return etree.QName(tag).localname


def parse_settings(text):
    """Settings from the ``<monitor/>`` element libvirt returns for the
    namespace (``virDomainGetMetadata``), or from None (no metadata).

    Never raises: anything invalid gives the defaults and an error text.
    """
    if text is None or not text.strip():
        return Parsed(DEFAULTS, None)
    if len(text) > MAX_METADATA_CHARS:
        return Parsed(DEFAULTS, 'metadata element is %d characters long, '
                                'more than %d' % (len(text),
                                                  MAX_METADATA_CHARS))
    try:
        element = _fromstring(text)
    except etree.XMLSyntaxError as exc:
        return Parsed(DEFAULTS, 'metadata is not XML: %s' % _quoted(exc))
    if element.getroottree().docinfo.doctype:
        # libvirt never returns one; entities declared in it would be
        # expanded into attribute values.
        return Parsed(DEFAULTS, 'metadata must not carry a DOCTYPE')
    return settings_from_element(element)


def settings_from_element(element):
    """Settings from a parsed ``<monitor/>`` element (any namespace
    prefix); defaults plus an error when it is invalid."""
    name = _local_name(element)
    if name != ELEMENT:
        return Parsed(DEFAULTS, 'metadata element is <%s>, expected <%s>'
                                % (_quoted(name), ELEMENT))
    own = etree.QName(element).namespace
    values = {}
    for raw_name, raw_value in sorted(element.attrib.items()):
        qname = etree.QName(raw_name)
        if qname.namespace not in (None, own):
            continue
        attribute = qname.localname
        if attribute not in _ATTRIBUTES:
            return Parsed(DEFAULTS, 'unknown attribute %s="%s" (known: %s)'
                                    % (_quoted(attribute),
                                       _quoted(raw_value),
                                       ', '.join(_ATTRIBUTES)))
        if attribute in values:
            return Parsed(DEFAULTS, '%s is given twice' % attribute)
        error = _unsafe(raw_value)
        if error is None:
            value, error = _convert(attribute, raw_value.strip())
        if error:
            return Parsed(DEFAULTS, '%s="%s": %s' % (
                attribute, _quoted(raw_value), error))
        values[attribute] = value
    specs, error = _probes_of(element, own)
    if error:
        return Parsed(DEFAULTS, error)
    if specs:
        values['probes'] = specs
    return Parsed(DomainSettings(**values), None)


def _ours(node, own):
    return isinstance(node.tag, str) and \
        etree.QName(node).namespace in (None, own)


def _probes_of(element, own):
    """The ``<probe/>`` children: (tuple of ProbeSpec, error)."""
    specs = []
    for child in element:
        if not _ours(child, own):
            continue  # a comment, or someone else's element
        if _local_name(child) != PROBE:
            return (), 'unknown element <%s> (known: <%s>)' % (
                _quoted(_local_name(child)), PROBE)
        if len(specs) >= probes_mod.MAX_PROBES:
            return (), 'more than %d probes' % probes_mod.MAX_PROBES
        values = {}
        for raw_name, raw_value in child.attrib.items():
            qname = etree.QName(raw_name)
            if qname.namespace in (None, own):
                values[qname.localname] = raw_value
        args = []
        for arg in child:
            if not _ours(arg, own):
                continue
            if _local_name(arg) != ARG:
                return (), 'unknown element <%s> in <%s> (known: <%s>)' % (
                    _quoted(_local_name(arg)), PROBE, ARG)
            args.append(arg.text or '')
        spec, error = probes_mod.probe_from_attributes(values, args)
        if error:
            return (), error
        specs.append(spec)
    error = probes_mod.unique(specs)
    if error:
        return (), error
    return tuple(specs), None


def _quoted(text):
    return masking.outside(str(text), _QUOTED_CHARS)


def _unsafe(value):
    """Why ``value`` is refused before it is even looked at, or None."""
    if len(value) > MAX_VALUE_CHARS:
        return '%d characters long, more than %d' % (len(value),
                                                     MAX_VALUE_CHARS)
    if masking.escape(value) != value:
        return 'holds control characters'
    return None


def _convert(attribute, value):
    if attribute == 'enabled':
        lowered = value.lower()
        if lowered not in _YES_NO:
            return None, 'must be yes or no'
        return _YES_NO[lowered], None
    if attribute == 'failure_threshold':
        try:
            number = int(value, 10)
        except ValueError:
            return None, 'must be an integer'
        if not 1 <= number <= MAX_FAILURE_THRESHOLD:
            return None, 'must be between 1 and %d' % MAX_FAILURE_THRESHOLD
        return number, None
    if attribute == 'application_action' and value not in recovery.ACTIONS:
        return None, 'must be one of %s' % ', '.join(recovery.ACTIONS)
    if value not in recovery.ACTIONS:
        return None, 'must be one of %s' % ', '.join(recovery.ACTIONS)
    return value, None


def _parse_domain(xml):
    try:
        root = _fromstring(xml)
    except etree.XMLSyntaxError as exc:
        raise ValueError('malformed domain XML: %s' % exc) from None
    if root.tag != 'domain':
        raise ValueError('not a libvirt domain XML: root element is <%s>'
                         % root.tag)
    return root


def settings_from_domain_xml(xml):
    """Settings from a whole domain XML (its ``<metadata>`` section).

    :raises ValueError: the text is not a domain XML.
    """
    root = _parse_domain(xml)
    found = root.findall('metadata/{%s}%s' % (NAMESPACE, ELEMENT))
    if not found:
        return Parsed(DEFAULTS, None)
    return settings_from_element(found[0])


def console_log_paths(xml):
    """Files the domain's serial consoles are written to, in device order:
    ``<serial type='file'>`` sources and the ``<log file=...>`` that
    libvirt keeps for other serial types. The ``<console>`` that mirrors
    the first serial port is not listed twice.

    :raises ValueError: the text is not a domain XML.
    """
    root = _parse_domain(xml)
    paths = []
    for device in root.iterfind('devices/*'):
        if device.tag not in ('serial', 'console'):
            continue
        candidates = []
        if device.get('type') == 'file':
            source = device.find('source')
            if source is not None:
                candidates.append(source.get('path'))
        log = device.find('log')
        if log is not None:
            candidates.append(log.get('file'))
        for path in candidates:
            if path and path not in paths:
                paths.append(path)
    return paths


def has_graphics(xml):
    """True when the domain has a display a screenshot can be taken of.

    :raises ValueError: the text is not a domain XML.
    """
    root = _parse_domain(xml)
    return (root.find('devices/graphics') is not None
            or any(video.find('model') is None
                   or video.find('model').get('type') != 'none'
                   for video in root.iterfind('devices/video')))
