# SPDX-License-Identifier: GPL-2.0-or-later
"""
The graph stress workload of issue #12, shared by test_graph_stress.py (a
budget of operations) and scripts/soak-graph (a wall-clock duration).

One daemon with iothreads io0 and io1 exports node data0 (a file node on
an image of random data) as 'data', writable, in io0.  Meanwhile:

- Two QMP clients (two monitors, one thread each) loop over random graph
  changes: start mirrors and backups to fresh target nodes, cancel and
  complete jobs, move nodes between io0 and io1 (x-blockdev-set-iothread,
  force), add and delete exports and nodes.  Every node and export an
  operation names is one that query-named-block-nodes or
  query-block-exports reported just before (filters and their generated
  names included), so the two clients race each other and the jobs'
  completions on real names.  Nothing deletes the export 'data'; its
  node may move, be mirrored or backed up, and be replaced by a
  mirror's target on completion (the export then serves the target).
- Four NBD clients (python3-libnbd, one thread each) own a quarter of
  'data' each: every write is read back and compared, and random reads
  are compared with a model of what the client wrote, so a write lost or
  misplaced by a graph change is found.

A QMP error is allowed only if it is one of EXPECTED_ERRORS (a race
between the clients, or a refusal that is right for the graph at that
moment); each is counted by class.  An NBD error or a verification
failure is never allowed.  Randomness comes from one seed, printed;
BLOCKD_TEST_SEED replays the same choices (the interleaving with the
daemon's threads differs from run to run).
"""

import os
import random
import re
import threading
import time

from harness import (EXIT_TIMEOUT, QMPError, assert_eq,
                     assert_no_sanitizer_report, peak_rss_kib)
from graphlib import MiB, daemon_fate, node_names, write_pattern

SIZE = 16 * MiB
NBD_CLIENTS = 4
REGION = SIZE // NBD_CLIENTS
# Nodes a QMP client may have created and not deleted yet: past this it
# deletes instead of adding (the targets' images hold real data).
MAX_NODES = 12
# How long the workload's threads may take to stop once told to.
STOP_BOUND = 120

# (name, pattern): the QMP errors (GenericError unless the pattern says
# otherwise) a graph change may get while the other client and the jobs
# change the graph under it.  Patterns match the whole description.
EXPECTED_ERRORS = [
    ('node gone',
     r"Cannot find device='[^']*' nor node-name='[^']*'"
     r"|Failed to find node with node-name='[^']*'"
     r"|'(file|target)': no node named '[^']*'"),
    ('job gone', r"Job not found|DeviceNotActive: Block job '[^']*' not found"),
    ('job state',
     r"Job '[^']*' in state '[a-z]+' cannot accept command verb '[a-z-]+'"
     # QEMU's job_complete_locked(): a READY job that the other client
     # has cancelled already.
     r"|The active block job '[^']*' cannot be completed"),
    ('permission conflict',
     r"Conflicts with use by .*"
     r"|Block node '[^']*' is read-only: cannot take permission .*"),
    ('node busy', r"Node '[^']*' is busy: .*"),
    ('implicit node', r"Node '[^']*' is not owned by the monitor"),
    ('not a root node', r"Need a root block node"),
    ('move refused',
     r"block job '[^']*' cannot move to another iothread"
     r"|Cannot move node '[^']*' to another iothread: .*"
     r"|Cannot change iothread of active block (export|backend) .*"),
    ('export gone',
     r"Export '[^']*' is not found"
     r"|Export '[^']*' is already shutting down"),
    ('export in use', r"export '[^']*' still in use"),
    ('same node',
     r"Can't mirror node into itself"
     r"|Source and target cannot be the same"),
]
_EXPECTED = [(cls, re.compile(pat)) for cls, pat in EXPECTED_ERRORS]


def error_class(error_class, desc):
    """The name of an expected QMP error, or None."""
    if error_class != 'GenericError':
        desc = f'{error_class}: {desc}'
    for name, pattern in _EXPECTED:
        if pattern.fullmatch(desc):
            return name
    return None


def test_seed():
    seed = int(os.environ.get('BLOCKD_TEST_SEED', '0')) or \
        random.randrange(1, 1 << 32)
    print(f'seed {seed} (BLOCKD_TEST_SEED={seed} repeats the choices)')
    return seed


class Tally:
    """Counters shared by the threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {}

    def add(self, key, n=1):
        with self.lock:
            self.counts[key] = self.counts.get(key, 0) + n

    def snapshot(self):
        with self.lock:
            return dict(self.counts)


class Operator(threading.Thread):
    """One QMP client making random graph changes until @stop says so."""

    def __init__(self, stress, index, qmp, rng, ops):
        super().__init__(name=f'qmp{index}', daemon=True)
        self.stress = stress
        self.index = index
        self.qmp = qmp
        self.rng = rng
        self.ops = ops
        self.serial = 0
        self.error = None

    def fresh(self, what):
        self.serial += 1
        return f'c{self.index}{what}{self.serial}'

    def run(self):
        try:
            done = 0
            while not self.stress.should_stop(done, self.ops):
                self.one()
                done += 1
                self.qmp.client.events.clear()
        except Exception as e:      # reported by the main thread
            self.error = e
            self.stress.stop.set()

    def one(self):
        nodes = node_names(self.qmp)
        if len(self.stress.ours(nodes)) > MAX_NODES:
            kind = self.rng.choice(['node-del', 'cancel'])
        else:
            kind = self.rng.choices(
                ['mirror', 'backup', 'cancel', 'complete', 'move',
                 'export-add', 'export-del', 'node-add', 'node-del'],
                [3, 3, 2, 2, 4, 2, 2, 2, 2])[0]
        command, args = getattr(self, 'op_' + kind.replace('-', '_'))(
            nodes)
        if command is None:
            return
        self.stress.call(kind, self.qmp, command, args)

    def new_target(self):
        """A fresh file node of SIZE on a sparse image: its name."""
        name = self.fresh('t')
        path = self.stress.env.path(f'{name}.raw')
        with open(path, 'wb') as f:
            f.truncate(SIZE)
        self.stress.call('node-add', self.qmp, 'blockdev-add',
                         {'driver': 'file', 'node-name': name,
                          'filename': path})
        with self.stress.lock:
            self.stress.files[name] = path
        return name

    def op_mirror(self, nodes):
        args = {'job-id': self.fresh('m'), 'device': self.rng.choice(nodes),
                'target': self.new_target(), 'sync': 'full'}
        if self.rng.random() < 0.5:
            args['filter-node-name'] = self.fresh('f')
        return 'blockdev-mirror', args

    def op_backup(self, nodes):
        return 'blockdev-backup', {
            'job-id': self.fresh('b'), 'device': self.rng.choice(nodes),
            'target': self.new_target(),
            'sync': self.rng.choice(['full', 'full', 'none'])}

    def pick_job(self):
        jobs = self.qmp.cmd('query-jobs')
        return self.rng.choice(jobs)['id'] if jobs else None

    def op_cancel(self, nodes):
        job = self.pick_job()
        if job is None:
            return None, None
        if self.rng.random() < 0.3:
            # After READY: finishes without switching over.
            return 'block-job-cancel', {'device': job, 'force': False}
        return 'job-cancel', {'id': job}

    def op_complete(self, nodes):
        job = self.pick_job()
        return ('job-complete', {'id': job}) if job else (None, None)

    def op_move(self, nodes):
        return 'x-blockdev-set-iothread', {
            'node-name': self.rng.choice(nodes),
            'iothread': self.rng.choice(['io0', 'io1']), 'force': True}

    def op_export_add(self, nodes):
        name = self.fresh('e')
        return 'block-export-add', {
            'type': 'nbd', 'id': name, 'name': name,
            'node-name': self.rng.choice(nodes),
            'writable': self.rng.random() < 0.3,
            'iothread': self.rng.choice(['io0', 'io1'])}

    def op_export_del(self, nodes):
        exports = [e['id'] for e in self.qmp.cmd('query-block-exports')
                   if e['id'] != 'data']
        if not exports:
            return None, None
        return 'block-export-del', {
            'id': self.rng.choice(exports),
            'mode': self.rng.choice(['safe', 'hard'])}

    def op_node_add(self, nodes):
        if self.rng.random() < 0.5:
            self.new_target()
            return None, None
        return 'blockdev-add', {'driver': 'raw', 'node-name': self.fresh('r'),
                                'file': self.rng.choice(nodes)}

    def op_node_del(self, nodes):
        # Mostly nodes the workload added: most others are implicit or
        # in use, and the targets' images should not pile up.
        ours = self.stress.ours(nodes)
        if ours and self.rng.random() < 0.8:
            return 'blockdev-del', {'node-name': self.rng.choice(ours)}
        return 'blockdev-del', {'node-name': self.rng.choice(nodes)}


class Verifier(threading.Thread):
    """One NBD client writing and verifying its quarter of 'data'."""

    def __init__(self, stress, index, nbd, rng):
        super().__init__(name=f'nbd{index}', daemon=True)
        self.stress = stress
        self.base = index * REGION
        # This client's quarter of the shared model: it alone writes it.
        self.model = memoryview(stress.model)[self.base:self.base + REGION]
        self.rng = rng
        self.h = nbd.NBD()
        self.h.set_export_name('data')
        self.h.connect_unix(stress.env.path('nbd.sock'))
        self.error = None

    def run(self):
        try:
            while not self.stress.stop.is_set():
                self.one()
            self.check(0, REGION)
            self.h.shutdown()
        except Exception as e:      # reported by the main thread
            self.error = e
            self.stress.stop.set()

    def one(self):
        n = self.rng.randrange(1, 17) * 4096
        off = self.rng.randrange(0, (REGION - n) // 4096 + 1) * 4096
        roll = self.rng.random()
        if roll < 0.6:
            data = self.rng.randbytes(n)
            flags = 1 if roll < 0.1 else 0          # LIBNBD_CMD_FLAG_FUA
            self.h.pwrite(data, self.base + off, flags)
            self.model[off:off + n] = data
            self.stress.tally.add('nbd writes')
            self.check(off, n)
        elif roll < 0.65:
            self.h.flush()
            self.stress.tally.add('nbd flushes')
        else:
            self.check(off, n)

    def check(self, off, n):
        got = self.h.pread(n, self.base + off)
        self.stress.tally.add('nbd reads verified')
        if got != self.model[off:off + n].tobytes():
            bad = next(i for i in range(n) if got[i] != self.model[off + i])
            raise AssertionError(
                f'{self.name}: byte {self.base + off + bad} of the export '
                f'reads {got[bad]:#x}, the last write there left '
                f'{self.model[off + bad]:#x}')


class Stress:
    """The daemon, its clients and their tallies."""

    def __init__(self, env, seed, daemon_env=None):
        import nbd
        self.nbd = nbd
        self.env = env
        self.seed = seed
        self.tally = Tally()
        self.unexpected = []
        # Nodes added by the QMP clients, and their images (under lock).
        self.lock = threading.Lock()
        self.added = set()
        self.files = {}
        self.stop = threading.Event()
        self.deadline = None
        path = env.path('data.raw')
        # What 'data' must hold: the image, then every acknowledged write.
        self.model = bytearray(write_pattern(path, SIZE, seed))
        sock = env.path('nbd.sock')
        self.daemon = env.start(
            ['--object', 'iothread,id=io0', '--object', 'iothread,id=io1',
             '--blockdev', f'driver=file,node-name=data0,filename={path}',
             '--nbd-server', f'addr.type=unix,addr.path={sock}',
             '--export', 'type=nbd,id=data,node-name=data0,name=data,'
                         'writable=on,iothread=io0'] +
            env.monitor_args('qmp1.sock', 'qmp1'), env=daemon_env)
        self.daemon.wait_socket(env.path('qmp1.sock'))
        self.daemon.wait_socket(sock)
        self.qmps = [env.qmp('qmp.sock'), env.qmp('qmp1.sock')]

    def should_stop(self, done, ops):
        if self.stop.is_set():
            return True
        if ops is not None:
            return done >= ops
        return time.monotonic() >= self.deadline

    def call(self, kind, qmp, command, args):
        """Run one graph change; count it and its error's class."""
        try:
            qmp.cmd(command, **{k.replace('-', '_'): v
                                for k, v in args.items()})
        except QMPError as e:
            cls = error_class(e.error_class, e.desc)
            if cls is None:
                self.unexpected.append(f'{command} {args}: '
                                       f'{e.error_class}: {e.desc}')
                cls = 'UNEXPECTED'
            self.tally.add(f'error: {cls}')
            self.tally.add(f'{kind} failed')
            return False
        self.tally.add(f'{kind} ok')
        if command == 'blockdev-add':
            with self.lock:
                self.added.add(args['node-name'])
        elif command == 'blockdev-del':
            with self.lock:
                self.added.discard(args['node-name'])
                path = self.files.pop(args['node-name'], None)
            if path:
                os.unlink(path)
        return True

    def ours(self, nodes):
        """Those of @nodes that the workload added and did not delete."""
        with self.lock:
            return sorted(self.added.intersection(nodes))

    def run(self, ops=None, duration=None):
        """Run the workload: @ops graph changes per QMP client, or for
        @duration seconds."""
        if duration is not None:
            self.deadline = time.monotonic() + duration
        rng = random.Random(self.seed)
        verifiers = [Verifier(self, i, self.nbd, random.Random(rng.random()))
                     for i in range(NBD_CLIENTS)]
        operators = [Operator(self, i, q, random.Random(rng.random()), ops)
                     for i, q in enumerate(self.qmps)]
        for t in verifiers + operators:
            t.start()
        bound = None if duration is None else duration + STOP_BOUND
        for t in operators:
            t.join(bound)
        self.stop.set()
        for t in verifiers + operators:
            t.join(STOP_BOUND)
            if t.is_alive():
                raise AssertionError(f'{t.name} did not stop within '
                                     f'{STOP_BOUND} s; '
                                     f'{daemon_fate(self.daemon, 0)}')
        for t in operators + verifiers:
            if t.error is not None:
                raise AssertionError(f'{t.name}: {t.error}; '
                                     f'{daemon_fate(self.daemon, 1)}') \
                    from t.error

    def end_jobs(self):
        """Cancel every job left and wait until none is listed."""
        qmp = self.qmps[0]
        qmp.client.events.clear()
        left = {j['id'] for j in qmp.cmd('query-jobs')}
        for job in sorted(left):
            try:
                qmp.cmd('job-cancel', id=job)
            except QMPError as e:
                if error_class(e.error_class, e.desc) not in ('job gone',
                                                             'job state'):
                    raise
        while left:
            ev = qmp.client.get_event(EXIT_TIMEOUT)
            assert ev is not None, f'jobs {sorted(left)} did not end'
            if ev['event'] == 'JOB_STATUS_CHANGE' and \
                    ev['data']['status'] == 'null':
                left.discard(ev['data']['id'])
        assert_eq(qmp.cmd('query-jobs'), [], 'jobs after the cancels')

    def verify_export(self):
        """Every byte of 'data', read by a new client, is the model's."""
        h = self.nbd.NBD()
        h.set_export_name('data')
        h.connect_unix(self.env.path('nbd.sock'))
        for off in range(0, SIZE, MiB):
            got = h.pread(MiB, off)
            if got != self.model[off:off + MiB]:
                raise AssertionError(f'the export differs from what was '
                                     f'written in MiB {off // MiB}')
        h.shutdown()

    def finish(self):
        """End the jobs, check the export, quit; the peak RSS (KiB)."""
        self.end_jobs()
        self.verify_export()
        peak = peak_rss_kib(self.daemon.pid)
        self.qmps[0].cmd('quit')
        self.daemon.wait(expect_rc=0)
        assert_no_sanitizer_report(self.daemon.stderr)
        return peak

    def report(self):
        counts = self.tally.snapshot()
        for key in sorted(counts):
            print(f'  {key}: {counts[key]}')
        for line in self.unexpected[:20]:
            print(f'  unexpected: {line}')
        return counts
