"""Cost of the per-domain store at scale, per backend.

No lab needed: the real DomainStore on the real backends, driven the way a
sweep drives it, in this process. For each N and backend:

* first sweep: N new records put inside one ``batch()``;
* steady sweep: inside one ``batch()``, ``all()`` (the metrics gauge), two
  ``get()`` per domain (listing sync, ping result), one ``put()`` per domain
  of which ``--changed`` (10 %) differ from the stored record and the rest
  are equal, then ``evict_missing()`` with every domain live. Wall and CPU
  time (process time of this single-threaded process), median of
  ``--sweeps``; also with every record changed, the case of a policy that
  stamps each answered ping into the record;
* restart: a new DomainStore on the same file until ``all()`` answers, and
  the memory the loaded store holds (tracemalloc, in a second load).

dbm is measured only where Python has dbm.gnu or dbm.ndbm; with dbm.dumb
the daemon refuses it.

    .venv/bin/python -m bench.store_scale [--sizes 500,2000,5000]
        [--backends memory,dbm,sqlite] [--sweeps 5] [--changed 0.1]
"""

import argparse
import dataclasses
import os
import statistics
import tempfile
import time
import tracemalloc

from oslo_config import cfg

from bench.figures import say
from monitor.conf import general
from monitor.health import record as domain_record
from monitor.health import states
from monitor.store import domain_store

BACKENDS = {
    'memory': domain_store.MEMORY_BACKEND,
    'dbm': domain_store.DBM_BACKEND,
    'sqlite': domain_store.SQLITE_BACKEND,
}
SIZES = (500, 2000, 5000)
SWEEPS = 5
CHANGED = 0.1


def make_conf(state_path, backend):
    conf = cfg.ConfigOpts()
    general.register_opts(conf)
    domain_store.register_opts(conf)
    conf([], default_config_files=[])
    conf.set_override('state_path', state_path)
    conf.set_override('host', 'bench-host')
    conf.set_override('backend', backend, group='cache')
    return conf


def records(n, now):
    return [domain_record.DomainRecord(
        '00000000-0000-4000-8000-%012x' % i, 'instance-%08x' % i,
        state=states.HEALTHY, last_ok=now, ever_healthy=True)
        for i in range(n)]


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def sweep(store, live, changed_every, stamp):
    """One sweep's store traffic; every ``changed_every``-th record changes."""
    with store.batch():
        store.all()
        for i, uuid in enumerate(live):
            record = store.get(uuid)
            store.get(uuid)
            if i % changed_every == 0:
                record = dataclasses.replace(record, last_ok=stamp)
            store.put(record)
        store.evict_missing(live)


def median_sweep(store, live, changed, sweeps):
    changed_every = max(1, round(1 / changed))
    walls, cpus = [], []
    for n in range(sweeps):
        wall, cpu = timed(lambda: sweep(store, live, changed_every,
                                        1000.0 + n))
        walls.append(wall)
        cpus.append(cpu)
    return statistics.median(walls), statistics.median(cpus)


def file_size(directory):
    return sum(os.path.getsize(os.path.join(directory, name))
               for name in os.listdir(directory))


def measure(backend, n, sweeps, changed):
    with tempfile.TemporaryDirectory(prefix='ghm-store-') as state_path:
        conf = make_conf(state_path, backend)
        store = domain_store.DomainStore.from_conf(conf)
        recs = records(n, 1000.0)
        live = [r.uuid for r in recs]

        def first():
            with store.batch():
                for record in recs:
                    store.put(record)
        first_wall, _ = timed(first)
        some = median_sweep(store, live, changed, sweeps)
        every = median_sweep(store, live, 1.0, sweeps)
        store.close()
        row = {'first': first_wall, 'sweep': some, 'sweep_all': every,
               'restart': None, 'held_kib': None, 'file_kib': None}
        if backend != domain_store.MEMORY_BACKEND:
            loaded = []
            row['restart'], _ = timed(lambda: loaded.append(
                domain_store.DomainStore.from_conf(conf).all()))
            assert len(loaded[0]) == n, 'restart lost records'
            tracemalloc.start()
            before = tracemalloc.get_traced_memory()[0]
            again = domain_store.DomainStore.from_conf(conf)
            row['held_kib'] = (tracemalloc.get_traced_memory()[0]
                               - before) / 1024
            tracemalloc.stop()
            again.close()
            row['file_kib'] = file_size(state_path) / 1024
        return row


def fmt(value, spec):
    return '-' if value is None else spec % value


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--sizes', default=','.join(map(str, SIZES)))
    parser.add_argument('--backends', default='memory,dbm,sqlite')
    parser.add_argument('--sweeps', type=int, default=SWEEPS)
    parser.add_argument('--changed', type=float, default=CHANGED,
                        help='share of records that change each sweep')
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(',')]
    names = args.backends.split(',')

    dbm_module = domain_store._new_dbm_module()
    say('dbm: Python would use %s for a new file%s' % (
        dbm_module, ' (refused: not measured)'
        if dbm_module == 'dbm.dumb' else ''))
    say('steady sweep: %d%% of records changed; "all changed": every one'
        % round(args.changed * 100))
    header = ('backend', 'N', 'first s', 'sweep s', 'CPU s', '% core@10s',
              'all changed s', 'CPU s', 'restart s', 'held MiB', 'file MiB')
    rows = [header]
    for name in names:
        if name == 'dbm' and dbm_module == 'dbm.dumb':
            continue
        backend = BACKENDS[name]
        label = '%s (%s)' % (name, dbm_module) if name == 'dbm' else name
        for n in sizes:
            row = measure(backend, n, args.sweeps, args.changed)
            wall, cpu = row['sweep']
            all_wall, all_cpu = row['sweep_all']
            rows.append((
                label, str(n), '%.3f' % row['first'], '%.3f' % wall,
                '%.3f' % cpu, '%.1f' % (cpu / 10.0 * 100),
                '%.3f' % all_wall, '%.3f' % all_cpu,
                fmt(row['restart'], '%.3f'),
                fmt(row['held_kib'] and row['held_kib'] / 1024, '%.1f'),
                fmt(row['file_kib'] and row['file_kib'] / 1024, '%.1f')))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        say('  '.join(cell.rjust(width) if i else cell.ljust(width)
                      for i, (cell, width) in enumerate(zip(row, widths))))


if __name__ == '__main__':
    main()
