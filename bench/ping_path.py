"""What the daemon's own ping path costs beside the libvirt calls.

Runs ``--pings`` guest-pings of the simulated host (bench/simlibvirt,
20-50 ms each unless ``GHM_SIM_PING_MS`` says otherwise), ``--slots`` at a
time, three ways, each in a process of its own that does nothing else:

- ``binding``: the binding's calls alone, on plain native threads
  (``bench/binding_cost.py``);
- ``lanes``: the same calls through the daemon's ping lanes (native pool,
  slots, mailbox, the green thread that takes the outcomes), as the
  scheduler starts them;
- ``guest-ping``: the daemon's whole guest-ping through the lanes (its
  reply's check, its freeze memory, its result).

Each way runs ``--runs`` times, in turn; the medians of the CPU seconds
are printed with the microseconds per ping above the binding alone. The
daemon pays for the rest of each ping after a thread slept through the
agent's answer, so these figures are far above what the same code costs
in a tight loop.

    .venv/bin/python -m bench.ping_path [--pings 6000] [--slots 50]
        [--runs 5]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from bench import binding_cost

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
WAYS = ('binding', 'lanes', 'guest-ping')


def _through_lanes(way, pings, slots):
    from monitor import concurrency
    concurrency.monkey_patch()
    import libvirt  # the simulated one, first on PYTHONPATH
    import libvirt_qemu

    from monitor.daemon import lanes as lanes_mod
    from monitor.virt import domain_xml
    from monitor.virt import domains as domains_mod
    from monitor.virt import guest_ping
    from monitor.virt import notes

    conn = libvirt.open('qemu:///system')
    agent = domain_xml.AgentChannel('org.qemu.guest_agent.0', None,
                                    'connected')
    infos = [domains_mod.DomainInfo(dom.UUIDString(), dom.name(), True,
                                    False, agent, dom=dom)
             for dom in conn.listAllDomains(0)]
    ended = []
    done = concurrency.Event()

    def on_ended(_tag, _ok, _value):
        ended.append(1)
        if len(ended) == pings:
            done.send()

    lanes = lanes_mod.Lanes(slots, on_ended)
    if way == 'lanes':
        def call(info):
            return libvirt_qemu.qemuAgentCommand(
                info.dom, '{"execute":"guest-ping"}', 2, 0)
    else:
        pinger = guest_ping.GuestPing(notes.Notes())

        def call(info):
            return pinger.ping(conn, info, 2)
    cpu0, wall0 = binding_cost.cpu_seconds(), time.monotonic()
    for i in range(pings):
        lanes.start(lanes.answering, call, (infos[i % len(infos)],), i)
    done.wait()
    return {'cpu_seconds': binding_cost.cpu_seconds() - cpu0,
            'wall_seconds': time.monotonic() - wall0}


def run_once(way, pings, slots):
    """{'cpu_seconds', 'wall_seconds'} of one way, in this process."""
    if way == 'binding':
        return binding_cost.measure(pings, slots)
    return _through_lanes(way, pings, slots)


def _child(way, pings, slots, env):
    result = subprocess.run(
        [sys.executable, '-m', 'bench.ping_path', '--way', way,
         '--pings', str(pings), '--slots', str(slots)],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=600,
        check=True)
    return json.loads(result.stdout.splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--pings', type=int, default=6000)
    parser.add_argument('--slots', type=int, default=50)
    parser.add_argument('--runs', type=int, default=5)
    parser.add_argument('--way', choices=WAYS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.way:
        print(json.dumps(run_once(args.way, args.pings, args.slots)))
        return 0
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.join(HERE, 'simlibvirt'), REPO]))
    env.setdefault('GHM_SIM_DOMAINS', '5000')
    env.setdefault('GHM_SIM_MAX_CLIENT_REQUESTS', str(args.slots))
    env.setdefault('GHM_SIM_MAX_WORKERS', str(args.slots + 20))
    cpu = {way: [] for way in WAYS}
    for _ in range(args.runs):
        for way in WAYS:
            cpu[way].append(_child(way, args.pings, args.slots,
                                   env)['cpu_seconds'])
    base = statistics.median(cpu['binding'])
    print('%d pings, %d at a time, %d runs each (median, range):'
          % (args.pings, args.slots, args.runs))
    for way in WAYS:
        median = statistics.median(cpu[way])
        print('  %-10s CPU %.3f s (%.3f-%.3f)  %+6.1f us per ping over the '
              'binding alone' % (way, median, min(cpu[way]), max(cpu[way]),
                                 (median - base) / args.pings * 1e6))
    return 0


if __name__ == '__main__':
    sys.exit(main())
