#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""blockdev-backup gives a point-in-time copy while the source changes: a
256 MiB source exported over NBD from an iothread is backed up (sync=full)
while a libnbd client keeps writing; the target equals the source as it
was when the job started, byte for byte, and the source has every write.
Also: cancel removes the copy-before-write filter and the export goes on;
a failing target (blkdebug) is reported, retried or stops the job per
on-target-error; a failed copy fails the guest's write
(break-guest-write); the JOB_STATUS_CHANGE sequences equal
qemu-storage-daemon's; quit with a running backup exits 0."""

import os
import random
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (assert_eq, assert_in, assert_qmp_error,  # noqa: E402
                     libnbd, main, nbd_available, qsd_binary, read_file,
                     skip, test)

MiB = 1024 * 1024
SIZE = 256 * MiB
BLOCK = 4096
IN_FLIGHT = 16
POLL_TRIES = 100000


def make_source(env, name='src.raw', size=SIZE):
    """A source with data in 3 of every 4 MiB (the rest holes, so zero
    detection runs too); returns its path and a copy of its content."""
    rng = random.Random(42)
    path = env.path(name)
    with open(path, 'wb') as f:
        f.truncate(size)
        for mib in range(size // MiB):
            if mib % 4 != 3:
                f.seek(mib * MiB)
                f.write(rng.randbytes(MiB))
    with open(path, 'rb') as f:
        return path, bytearray(f.read())


def daemon_args(env, source, target_opts=None, binary_is_qsd=False):
    sock = env.path('nbd.sock')
    target = env.make_image('tgt.raw', size=os.path.getsize(source))
    args = ['--object', 'iothread,id=io0',
            '--blockdev', f'driver=file,node-name=src0,filename={source}',
            '--blockdev', f'driver=file,node-name=tgtfile,filename={target}']
    args += ['--blockdev', target_opts or
             'driver=raw,node-name=tgt0,file=tgtfile']
    args += ['--nbd-server', f'addr.type=unix,addr.path={sock}',
             '--export', 'type=nbd,id=exp0,node-name=src0,name=disk,'
                         'writable=on,iothread=io0']
    return args, target, f'nbd+unix:///disk?socket={sock}'


def start(env, target_opts=None, size=SIZE, binary=None):
    libnbd()
    if binary is None and not nbd_available(env):
        skip('this blockd has no NBD server')
    source, snapshot = make_source(env, size=size)
    args, target, uri = daemon_args(env, source, target_opts)
    d = env.start(args, binary=binary)
    return d, env.qmp(), source, target, uri, snapshot


def start_backup(qmp, sync='full', **extra):
    """blockdev-backup job0 of src0 to tgt0, with @extra arguments."""
    qmp.cmd('blockdev-backup', job_id='job0', device='src0', target='tgt0',
            sync=sync, **extra)


def first_difference(a, b):
    for i in range(0, min(len(a), len(b)), MiB):
        if a[i:i + MiB] != b[i:i + MiB]:
            for j in range(i, i + MiB):
                if a[j] != b[j]:
                    return j
    return None if len(a) == len(b) else min(len(a), len(b))


def assert_same(actual, expected, what):
    if actual != expected:
        raise AssertionError(f'{what}: first difference at byte '
                             f'{first_difference(actual, expected)}')


def job_status(qmp, job_id):
    for job in qmp.cmd('query-jobs'):
        if job['id'] == job_id:
            return job['status']
    return None


def wait_status(qmp, job_id, status):
    """Poll query-jobs until @job_id is in @status (the job resumes from
    its start-up pause in its iothread, after the command's reply)."""
    for _ in range(POLL_TRIES):
        if job_status(qmp, job_id) == status:
            return
    raise AssertionError(f'job {job_id} never became {status}')


def filter_nodes(qmp):
    return [n['node-name'] for n in qmp.cmd('query-named-block-nodes')
            if n['drv'] == 'copy-before-write']


class Writer:
    """A libnbd client with IN_FLIGHT random writes at a time, none
    overlapping another in flight, mirrored into @model."""

    def __init__(self, uri, model, seed=7):
        nbd = libnbd()
        self.nbd = nbd
        self.h = nbd.NBD()
        self.h.connect_uri(uri)
        self.model = model
        self.rng = random.Random(seed)
        self.pending = {}
        self.acked = 0
        self.failed = 0

    def _issue(self):
        size = len(self.model)
        while len(self.pending) < IN_FLIGHT:
            length = self.rng.randrange(1, 17) * BLOCK
            offset = self.rng.randrange(0, size - length + 1, BLOCK)
            if any(o < offset + length and offset < o + len(d)
                   for o, d in self.pending.values()):
                continue
            data = self.rng.randbytes(length)
            cookie = self.h.aio_pwrite(data, offset)
            self.pending[cookie] = (offset, data)

    def step(self):
        """Keep the queue full and reap what completed."""
        self._issue()
        self.h.poll(-1)
        for cookie in list(self.pending):
            try:
                done = self.h.aio_command_completed(cookie)
            except self.nbd.Error:
                self.pending.pop(cookie)
                self.failed += 1
                continue
            if done:
                offset, data = self.pending.pop(cookie)
                self.model[offset:offset + len(data)] = data
                self.acked += 1

    def drain(self):
        while self.pending:
            self.h.poll(-1)
            self.step_reap()

    def step_reap(self):
        for cookie in list(self.pending):
            if self.h.aio_command_completed(cookie):
                offset, data = self.pending.pop(cookie)
                self.model[offset:offset + len(data)] = data
                self.acked += 1

    def close(self):
        self.drain()
        self.h.shutdown()


def write_while(writer, qmp, job_id, until):
    """Write until the job's status is in @until (or it is gone); returns
    the number of writes acknowledged meanwhile."""
    before = writer.acked
    for _ in range(POLL_TRIES):
        for _ in range(8):
            writer.step()
        status = job_status(qmp, job_id)
        if status is None or status in until:
            return writer.acked - before
    raise AssertionError(f'job {job_id} never reached {until}')


@test
def test_full_backup_is_point_in_time_under_writes(env):
    d, qmp, source, target, uri, snapshot = start(env)
    model = bytearray(snapshot)
    # Slow enough that the client writes over most of the image while
    # the job still has it to copy; nothing waits on time.
    start_backup(qmp, speed=64 * MiB)
    assert_eq(len(filter_nodes(qmp)), 1, 'filters while running')
    writer = Writer(uri, model)
    during = write_while(writer, qmp, 'job0', until=('concluded', 'null'))
    assert during > 100, f'only {during} writes during the job'
    writer.close()
    ev = qmp.event('BLOCK_JOB_COMPLETED')
    assert_eq(ev['data']['device'], 'job0')
    assert 'error' not in ev['data'], ev
    assert_eq(ev['data']['offset'], SIZE, 'progress')
    assert_eq(ev['data']['len'], SIZE, 'length')
    assert_eq(filter_nodes(qmp), [], 'filters after the job')
    d.quit(qmp)
    assert_same(read_file(target), bytes(snapshot), 'target vs snapshot')
    assert_same(read_file(source), bytes(model), 'source vs writes')
    assert model != snapshot, 'the writes changed nothing'


@test
def test_cancel_removes_filter_and_export_goes_on(env):
    d, qmp, source, target, uri, snapshot = start(env)
    model = bytearray(snapshot)
    start_backup(qmp, speed=4 * MiB)
    writer = Writer(uri, model)
    for _ in range(50):
        writer.step()
    writer.drain()
    qmp.cmd('job-cancel', id='job0')
    assert_eq(qmp.job_statuses('job0')[-3:],
              ['aborting', 'concluded', 'null'])
    ev = qmp.event('BLOCK_JOB_CANCELLED')
    assert_eq(ev['data']['device'], 'job0')
    assert_eq(filter_nodes(qmp), [], 'filters after cancel')
    exports = qmp.cmd('query-block-exports')
    assert_eq([e['node-name'] for e in exports], ['src0'])
    # The export still serves, and writes land in the source file.
    before = writer.acked
    for _ in range(POLL_TRIES):
        if writer.acked - before >= 200:
            break
        writer.step()
    writer.close()
    assert writer.acked - before >= 200, 'writes after cancel'
    assert_eq(writer.failed, 0, 'failed writes')
    d.quit(qmp)
    assert_same(read_file(source), bytes(model), 'source vs writes')


def blkdebug_target(once):
    return ('{"driver": "blkdebug", "node-name": "tgt0", "image": "tgtfile",'
            ' "inject-error": [{"event": "write_aio", "errno": 5, "once": %s}]}'
            % ('true' if once else 'false'))


def backup_to_failing_target(env, once, sync='full', **extra):
    """start() with a 16 MiB source and a target whose writes fail (only
    the first if @once), and start_backup() with @sync and @extra; what
    start() returns."""
    d, qmp, source, target, uri, snapshot = start(
        env, target_opts=blkdebug_target(once), size=16 * MiB)
    start_backup(qmp, sync, **extra)
    return d, qmp, source, target, uri, snapshot


@test
def test_failing_target_report_fails_job(env):
    d, qmp, source, target, uri, snapshot = backup_to_failing_target(
        env, once=False, on_target_error='report')
    ev = qmp.event('BLOCK_JOB_ERROR')
    assert_eq(ev['data'], {'device': 'job0', 'operation': 'write',
                           'action': 'report'})
    ev = qmp.event('BLOCK_JOB_COMPLETED')
    assert_eq(ev['data']['error'], 'Input/output error')
    assert_eq(qmp.job_statuses('job0')[-3:],
              ['aborting', 'concluded', 'null'])
    assert_eq(filter_nodes(qmp), [], 'filters after failure')


def errors_until_failed(env):
    """BLOCK_JOB_ERROR events of a full backup to a target that always
    fails, with on-target-error=report."""
    d, qmp, source, target, uri, snapshot = backup_to_failing_target(
        env, once=False, on_target_error='report')
    ev = qmp.event('BLOCK_JOB_COMPLETED')
    assert_eq(ev['data']['error'], 'Input/output error')
    # Events before COMPLETED were queued while waiting for it.
    errors = [e['data'] for e in qmp.client.events
              if e['event'] == 'BLOCK_JOB_ERROR']
    return errors


@test
def test_chunks_failing_together_report_once(env):
    """All 16 chunks of the image are in flight at once and fail: the
    policy is applied once, not once per chunk, as QEMU applies it once
    per block-copy call of its parallel workers.  (Not compared with QSD:
    its blkdebug injects write_aio only below a format driver.)"""
    got = errors_until_failed(env)
    assert_eq(got, [{'device': 'job0', 'operation': 'write',
                     'action': 'report'}], 'BLOCK_JOB_ERROR events')


@test
def test_failing_target_ignore_retries(env):
    d, qmp, source, target, uri, snapshot = backup_to_failing_target(
        env, once=True, on_target_error='ignore')
    ev = qmp.event('BLOCK_JOB_ERROR')
    assert_eq(ev['data'], {'device': 'job0', 'operation': 'write',
                           'action': 'ignore'})
    ev = qmp.event('BLOCK_JOB_COMPLETED')
    assert 'error' not in ev['data'], ev
    qmp.job_statuses('job0')
    d.quit(qmp)
    assert_same(read_file(target), bytes(snapshot), 'target vs source')


@test
def test_failing_target_stop_pauses_until_resume(env):
    d, qmp, source, target, uri, snapshot = backup_to_failing_target(
        env, once=True, on_target_error='stop')
    ev = qmp.event('BLOCK_JOB_ERROR')
    assert_eq(ev['data'], {'device': 'job0', 'operation': 'write',
                           'action': 'stop'})
    wait_status(qmp, 'job0', 'paused')
    info = qmp.cmd('query-block-jobs')[0]
    assert_eq(info['io-status'], 'failed')
    qmp.cmd('job-resume', id='job0')
    ev = qmp.event('BLOCK_JOB_COMPLETED')
    assert 'error' not in ev['data'], ev
    qmp.job_statuses('job0')
    d.quit(qmp)
    assert_same(read_file(target), bytes(snapshot), 'target vs source')


@test
def test_failed_copy_fails_guest_write(env):
    nbd = libnbd()
    d, qmp, source, target, uri, snapshot = backup_to_failing_target(
        env, once=False, sync='none')
    h = nbd.NBD()
    h.connect_uri(uri)
    try:
        h.pwrite(b'\xaa' * BLOCK, 0)
    except nbd.Error as e:
        assert_in('EIO', str(e), 'the failed write')
    else:
        raise AssertionError('the write succeeded although its copy failed')
    # The source is unchanged.
    assert_eq(h.pread(BLOCK, 0), bytes(snapshot[:BLOCK]))
    h.shutdown()
    qmp.cmd('job-cancel', id='job0')
    qmp.job_statuses('job0')
    assert_eq(filter_nodes(qmp), [])


@test
def test_sync_none_copies_only_overwritten(env):
    d, qmp, source, target, uri, snapshot = start(env, size=16 * MiB)
    model = bytearray(snapshot)
    start_backup(qmp, sync='none', filter_node_name='cbw0')
    assert_eq(filter_nodes(qmp), ['cbw0'])
    writer = Writer(uri, model)
    for _ in range(100):
        writer.step()
    writer.close()
    assert_eq(job_status(qmp, 'job0'), 'running', 'sync=none keeps running')
    qmp.cmd('job-cancel', id='job0')
    qmp.job_statuses('job0')
    d.quit(qmp)
    tgt = read_file(target)
    # Every cluster the client touched holds its old content; the rest of
    # the target was never written (zeroes).
    touched = set()
    for i in range(0, len(model), 65536):
        if model[i:i + 65536] != snapshot[i:i + 65536]:
            touched.add(i)
    assert touched, 'the writes changed nothing'
    for i in range(0, len(model), 65536):
        want = snapshot[i:i + 65536] if i in touched else bytes(65536)
        assert tgt[i:i + 65536] == want, f'cluster at {i}'


@test
def test_refusals(env):
    d, qmp, source, target, uri, snapshot = start(env, size=16 * MiB)
    for sync in ['top', 'incremental', 'bitmap']:
        assert_qmp_error(lambda: qmp.cmd(
            'blockdev-backup', job_id='j', device='src0', target='tgt0',
            sync=sync), f"Sync mode '{sync}' not supported")
    assert_qmp_error(lambda: qmp.cmd(
        'blockdev-backup', job_id='j', device='src0', target='tgt0',
        sync='full', compress=True),
        'Compression is not supported for this drive tgt0')
    assert_qmp_error(lambda: qmp.cmd(
        'blockdev-backup', job_id='j', device='nope', target='tgt0',
        sync='full'), "Cannot find device='nope' nor node-name='nope'")
    assert_qmp_error(lambda: qmp.cmd(
        'blockdev-backup', job_id='j', device='src0', target='src0',
        sync='full'), 'Source and target cannot be the same')
    qmp.cmd('blockdev-add', driver='null-co', node_name='small',
            size=MiB)
    assert_qmp_error(lambda: qmp.cmd(
        'blockdev-backup', job_id='j', device='src0', target='small',
        sync='full'), 'Source and target image have different sizes')
    e = assert_qmp_error(lambda: qmp.cmd(
        'blockdev-backup', job_id='j', device='src0', target='tgt0',
        sync='sideways'))
    assert_in('sync', e.desc)
    assert_eq(qmp.cmd('query-jobs'), [], 'jobs after refusals')
    assert_eq(filter_nodes(qmp), [], 'filters after refusals')
    # A refusal after the filter went in takes it out again.
    start_backup(qmp, sync='none', filter_node_name='cbw0')
    qmp.cmd('blockdev-add', driver='file', node_name='tgt1',
            filename=env.make_image('tgt1.raw', size=16 * MiB))
    assert_qmp_error(lambda: qmp.cmd(
        'blockdev-backup', job_id='job0', device='src0', target='tgt1',
        sync='full'), "Job ID 'job0' already in use")
    assert_eq(filter_nodes(qmp), ['cbw0'], 'filters after the refusal')
    qmp.cmd('job-cancel', id='job0')
    qmp.job_statuses('job0')
    assert_eq(filter_nodes(qmp), [], 'filters after cancel')


def job_flow(env, binary, sync, cancel):
    """Statuses of one backup's life on @binary."""
    d, qmp, source, target, uri, snapshot = start(env, size=16 * MiB,
                                                  binary=binary)
    start_backup(qmp, sync=sync)
    if cancel:
        # Wait until it runs, so the cancel meets a running job.
        wait_status(qmp, 'job0', 'running')
        qmp.cmd('job-cancel', id='job0')
    statuses = qmp.job_statuses('job0')
    qmp.close()
    d.stop(signal.SIGTERM, expect_rc=0)
    for name in os.listdir(env.dir):
        if name.endswith('.raw') or name.endswith('.sock'):
            os.unlink(env.path(name))
    return statuses


@test
def test_status_changes_as_qsd(env):
    qsd = qsd_binary()
    for sync, cancel in [('full', False), ('none', True)]:
        want = job_flow(env, qsd, sync, cancel)
        got = job_flow(env, None, sync, cancel)
        assert_eq(got, want, f'sync={sync} cancel={cancel}')


@test
def test_quit_with_running_backup_exits_0(env):
    d, qmp, source, target, uri, snapshot = start(env, size=16 * MiB)
    start_backup(qmp, sync='none')
    wait_status(qmp, 'job0', 'running')
    d.quit(qmp)
    assert_same(read_file(source), bytes(snapshot), 'source after quit')


if __name__ == '__main__':
    main()
