"""dbm files the domain store refuses.

Python's ``dbm`` silently picks ``dbm.dumb`` when gdbm and ndbm are
missing, and dbm.dumb rewrites its index on every write: a sweep over a
few hundred domains would take longer than the interval.
"""

import dbm
import importlib
import os
import tempfile


def check(filename, dbm_backend, instead):
    """Refuse ``filename`` for the ``dbm_backend`` when it is, or would
    be, a dbm.dumb file or one this Python cannot read; ``instead``: the
    backend to name in the message.

    :raises ValueError: naming the problem and the fix.
    """
    existing = dbm.whichdb(filename)
    if existing is None:
        module = new_dbm_module()
        if module == 'dbm.dumb':
            raise ValueError(
                '%s would use dbm.dumb: this Python has neither dbm.gnu '
                'nor dbm.ndbm, and dbm.dumb rewrites its index on every '
                'write (minutes per sweep at a few hundred domains); use '
                '%s' % (dbm_backend, instead))
        return
    if existing == '':
        raise ValueError('%s is not a dbm file this Python can read'
                         % filename)
    if existing == 'dbm.dumb':
        raise ValueError(
            '%s is a dbm.dumb file, which rewrites its index on every '
            'write (minutes per sweep at a few hundred domains); remove it '
            'and use %s' % (filename, instead))
    try:
        importlib.import_module(existing)
    except ImportError:
        raise ValueError('%s was written by %s, which this Python lacks'
                         % (filename, existing)) from None


def new_dbm_module():
    """The dbm module Python picks for a new file, e.g. 'dbm.gnu'.

    Found by creating a file the way dogpile does (``dbm.open(..., 'c')``)
    in a scratch directory: that follows Python's own order of preference,
    whatever it is in this version.
    """
    with tempfile.TemporaryDirectory(prefix='ghm-dbm-probe-') as directory:
        path = os.path.join(directory, 'probe')
        with dbm.open(path, 'c') as db:
            db[b'probe'] = b'probe'
        return dbm.whichdb(path)
