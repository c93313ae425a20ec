"""A private hypervisor for the libvirt edge's tests: libvirt's daemon-less
test driver on a node description of our own, and the helpers the tests
share."""

import json

import libvirt

from monitor.virt import metadata as domain_metadata

AGENT = 'org.qemu.guest_agent.0'

PLAIN = 'aaaaaaaa-0000-4000-8000-000000000001'
WITH_AGENT = 'aaaaaaaa-0000-4000-8000-000000000002'
PAUSED = 'aaaaaaaa-0000-4000-8000-000000000003'
SHUT_OFF = 'aaaaaaaa-0000-4000-8000-000000000004'
UNKNOWN = 'aaaaaaaa-0000-4000-8000-0000000000ff'


def domain(name, uuid, runstate=1, devices=''):
    return f"""
  <domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>
    <name>{name}</name>
    <uuid>{uuid}</uuid>
    <memory>1024</memory>
    <os><type>hvm</type></os>
    <devices>{devices}</devices>
    <test:runstate>{runstate}</test:runstate>
  </domain>"""


def agent_channel(path='/var/lib/libvirt/qemu/channel/target/ga.sock',
                  name=AGENT):
    return f"""
      <channel type='unix'>
        <source mode='bind' path='{path}'/>
        <target type='virtio' name='{name}'/>
      </channel>"""


NODE = '<node>%s\n</node>\n' % ''.join([
    domain('plain', PLAIN),
    domain('with-agent', WITH_AGENT, devices=agent_channel()),
    domain('paused', PAUSED, runstate=3, devices=agent_channel(
        '/run/paused.sock')),
    domain('shut-off', SHUT_OFF, runstate=5, devices=agent_channel()),
])


def libvirt_error(code, domain, message):
    """A libvirtError as the binding raises it for (code, domain)."""
    exc = libvirt.libvirtError(message)
    exc.err = (code, domain, message, libvirt.VIR_ERR_ERROR, None, None,
               None, -1, -1)
    return exc


def by_uuid(infos):
    return {info.uuid: info for info in infos}


class AgentStandIn:
    """Replaces libvirt_qemu.qemuAgentCommand: answers or raises."""

    def __init__(self, reply=None, error=None, before=None):
        self.reply = reply
        self.error = error
        self.before = before
        self.calls = []

    def __call__(self, dom, command, timeout, flags):
        self.calls.append((dom.UUIDString(), json.loads(command), timeout,
                           flags))
        if self.before is not None:
            self.before()
        if self.error is not None:
            raise self.error
        return self.reply


CRASHED = 'aaaaaaaa-0000-4000-8000-000000000006'


UNEXPECTED = [
    UnicodeDecodeError('utf-8', b'\xff', 0, 1, 'invalid start byte'),
    RecursionError('maximum recursion depth exceeded'),
    OverflowError('int too large to convert'),
    ValueError('Exceeds the limit (4300 digits) for integer string'),
    KeyError('state.state'),
    UnboundLocalError("local variable 'dom' referenced before assignment"),
]


def raising_for(monkeypatch, cls, method, uuid, exc):
    """Make ``cls.method`` raise ``exc`` for the domain ``uuid`` only."""
    real = getattr(cls, method)
    real_uuid = libvirt.virDomain.UUIDString

    def maybe_raise(dom, *args, **kwargs):
        if real_uuid(dom) == uuid:
            raise exc
        return real(dom, *args, **kwargs)

    monkeypatch.setattr(cls, method, maybe_raise)


def notes_of(host):
    return [n for n in host.drain_notes() if n.stage != 'connect']


class Counting:
    def __init__(self):
        self.stages = []

    def domain_error(self, stage):
        self.stages.append(stage)


def set_monitor_element(host, uuid, text):
    host.connection.lookupByUUIDString(uuid).setMetadata(
        libvirt.VIR_DOMAIN_METADATA_ELEMENT, text, domain_metadata.KEY,
        domain_metadata.NAMESPACE, libvirt.VIR_DOMAIN_AFFECT_LIVE)
