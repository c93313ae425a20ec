"""What the simulated libvirt binding costs by itself.

bench/simlibvirt runs inside the monitor's process, so the CPU time the
scale benchmark and the soak measure includes the simulation's own work:
its slot bookkeeping in Python (libvirtd's max_client_requests and
max_workers), the sleeps of every guest-ping, and the thread switches they
cause. The real binding does that work in C and in libvirtd, not in the
monitor. This measures it alone: ``--pings`` guest-pings of the simulated
host (callers pass the agent commands the monitor made: its freeze-status
checks cost the simulation as much as a ping), ``--threads`` at a time
(the monitor's max_concurrent_pings), in a
process that does nothing else, and prints the CPU seconds they took as
JSON, so that a benchmark can print how much of a round was the
simulation's and how much the monitor's own.

    .venv/bin/python -m bench.binding_cost [--pings 5000] [--threads 50]

Run with bench/simlibvirt first on PYTHONPATH and the GHM_SIM_* variables
of the run it is compared with (``cost_of_pings`` does both).
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(pings, threads):
    import libvirt  # the simulated one, first on PYTHONPATH
    import libvirt_qemu

    conn = libvirt.open('qemu:///system')
    domains = conn.listAllDomains(0)
    todo = [domains[i % len(domains)] for i in range(pings)]
    lock = threading.Lock()

    def work():
        while True:
            with lock:
                if not todo:
                    return
                dom = todo.pop()
            try:
                libvirt_qemu.qemuAgentCommand(
                    dom, '{"execute":"guest-ping"}', 2, 0)
            except libvirt.libvirtError:
                pass  # a hung agent: its time is what is measured

    cpu0, wall0 = cpu_seconds(), time.monotonic()
    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return {'pings': pings, 'threads': threads,
            'cpu_seconds': cpu_seconds() - cpu0,
            'wall_seconds': time.monotonic() - wall0}


def cost_of_pings(env, pings, threads, timeout=300):
    """{'cpu_seconds', 'wall_seconds', ...} of ``pings`` pings of the
    simulated binding alone, in a child process with ``env`` (the
    monitor's: PYTHONPATH and GHM_SIM_*); None when it could not run."""
    env = dict(env, PYTHONPATH=os.pathsep.join(
        [os.path.join(HERE, 'simlibvirt'), REPO]))
    env.pop('GHM_SIM_HUNG_FILE', None)
    env.pop('GHM_SIM_COUNT_FILE', None)
    try:
        result = subprocess.run(
            [sys.executable, '-m', 'bench.binding_cost', '--pings',
             str(pings), '--threads', str(threads)],
            env=env, cwd=REPO, capture_output=True, text=True,
            timeout=timeout, check=True)
        return json.loads(result.stdout)
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--pings', type=int, default=5000)
    parser.add_argument('--threads', type=int, default=50)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.pings, args.threads)))


if __name__ == '__main__':
    main()
