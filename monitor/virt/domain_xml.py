"""Reading a libvirt domain XML: does the domain have a guest agent channel?

The channel is found by its virtio target name, never by its socket path:
libvirt generates the path itself (under
/var/lib/libvirt/qemu/channel/target/domain-N-NAME/) unless the definition
sets one, as Nova does. An optional path filter serves setups that only want
channels under a given directory.
"""

import re
import typing

from lxml import etree
from oslo_config import cfg

from monitor.errors import DomainXMLError

GROUP = 'monitor'

OPTS = [
    cfg.StrOpt(
        'agent_channel_name',
        default='org.qemu.guest_agent.0',
        help="""
Target name of the virtio-serial channel that connects to the QEMU guest
agent. Only domains with such a channel are monitored.

Possible values:

* The name in <channel><target type='virtio' name='...'/></channel> of the
  domain XML. Default org.qemu.guest_agent.0, the name libvirt and Nova use.
"""),
    cfg.StrOpt(
        'agent_channel_path_regex',
        default=None,
        help="""
Regular expression the agent channel's unix socket path must contain a
match for (Python re.search; anchor it with ^ and $ to match the whole
path). Domains whose agent channel has no unix socket or another path are
not monitored.

Possible values:

* Unset (default): no path filter, the channel name alone decides.
* A regular expression, e.g.
  ^/var/lib/libvirt/qemu/org\\.qemu\\.guest_agent\\.0\\.instance-.+\\.sock$
  to monitor only the channels Nova creates.

Related options:

* agent_channel_name
"""),
]


def register_opts(conf):
    conf.register_opts(OPTS, group=GROUP)


def list_opts():
    return [(GROUP, OPTS)]


class AgentChannel(typing.NamedTuple):
    name: str
    # Unix socket path; None for an inactive definition that leaves the
    # path to libvirt, or for a channel that is not a unix socket.
    path: typing.Optional[str]
    # 'connected' / 'disconnected' as libvirt last saw the agent; None when
    # libvirt does not say (inactive XML).
    state: typing.Optional[str]


# Domain XML comes from libvirt, but there is no reason to let a parser fetch
# or expand anything.
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True,
                          huge_tree=False)


def _parse(xml):
    if isinstance(xml, str):
        # lxml refuses str input that carries an encoding declaration.
        xml = xml.encode('utf-8')
    try:
        root = etree.fromstring(xml, parser=_PARSER)
    except etree.XMLSyntaxError as exc:
        raise DomainXMLError('malformed domain XML: %s' % exc) from None
    if root is None:
        raise DomainXMLError('malformed domain XML: empty document')
    if root.tag != 'domain':
        raise DomainXMLError(
            'not a libvirt domain XML: root element is <%s>, not <domain>'
            % root.tag)
    return root


def find_agent_channel(xml, channel_name, path_regex=None):
    """Return the domain's guest agent channel, or None when it has none.

    :param xml: the domain XML, str or bytes.
    :param channel_name: the virtio target name to look for.
    :param path_regex: None, or a pattern (str or compiled) the channel's
        unix socket path must contain a match for.
    :raises DomainXMLError: the XML is malformed or not a domain.
    """
    root = _parse(xml)
    if isinstance(path_regex, str):
        path_regex = re.compile(path_regex)
    for channel in root.iterfind('devices/channel'):
        target = channel.find('target')
        if (target is None or target.get('type') != 'virtio'
                or target.get('name') != channel_name):
            continue
        path = None
        if channel.get('type') == 'unix':
            source = channel.find('source')
            if source is not None:
                path = source.get('path')
        if path_regex is not None and (
                path is None or not path_regex.search(path)):
            continue
        return AgentChannel(channel_name, path, target.get('state'))
    return None


def domain_uuid_and_name(xml):
    """Return (uuid, name) from a domain XML.

    :raises DomainXMLError: malformed XML, or no uuid or name.
    """
    root = _parse(xml)
    uuid = root.findtext('uuid')
    name = root.findtext('name')
    if not uuid or not name:
        raise DomainXMLError('domain XML has no %s'
                             % ('uuid' if not uuid else 'name'))
    return uuid.strip(), name.strip()
