#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""A command that names a node which a job's completion removes while the
command waits (issue #12, finding 1): the daemon answers it, with a
success or QEMU's words for a node that is gone, and lives on.

Two file nodes in iothread io0 are mirrored (blockdev-mirror, with
filter-node-name=mtop, or without it: the filter's generated name is read
from query-named-block-nodes); once the job is READY, job-cancel and a
second command naming the filter go out in the same write, so the second
command runs while the cancelled job is finishing, and its drain or poll
runs the job's completion, which removes the filter.  The second command
is each of: x-blockdev-set-iothread (force), blockdev-backup, blockdev-mirror,
block-export-add (to iothread io1) and blockdev-add of a copy-before-write
filter over it.  Each is tried ROUNDS times on one daemon.

Every reply must be a success or an error from a short list: the words
qemu-storage-daemon 7.2 gives when the node does not exist (graphlib.py),
or a refusal that is right while the node still exists (each listed with
why).  Every reply must be UTF-8 JSON and name the node as it was sent.
After the rounds the daemon answers query-version, an NBD client reads
the source's data through a new export, `quit` ends the daemon with exit
status 0 and its stderr holds no sanitizer report.

    test_graph_races.py [--server=blockd|qsd] [TEST ...]

--server=qsd (or BLOCKD_TEST_SERVER=qsd) runs the same checks against
qemu-storage-daemon.  BLOCKD_TEST_ROUNDS sets the rounds per test
(default 20).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (assert_eq, assert_no_sanitizer_report,  # noqa: E402
                     main, skip, test)
from graphlib import (MiB, Jobs, check_reply, daemon_args,  # noqa: E402
                      failing_daemon, file_image, missing_node_errors,
                      node_names, pipeline)
from nbdserver import check_server, server_binary  # noqa: E402

try:
    import nbd
except ImportError:
    skip('python3-libnbd is not installed (import nbd)')

ROUNDS = int(os.environ.get('BLOCKD_TEST_ROUNDS', '20'))
SIZE = 8 * MiB
NODES = ('src0', 'tgt0', 'bak0', 'cbt0')


class Race:
    """One daemon and its nodes: src0 (the source, random data), tgt0 (the
    mirror's target), bak0 and cbt0 (targets of the second command), all
    in io0 at the start of each round."""

    def __init__(self, env):
        check_server()
        images = {}
        for i, name in enumerate(NODES):
            images[name] = file_image(env, f'{name}.raw', SIZE,
                                      seed=1 if name == 'src0' else None)
        self.source_data = images['src0'][1]
        self.daemon = env.start(
            daemon_args(env, [(n, images[n][0]) for n in NODES]),
            binary=server_binary())
        self.qmp = env.qmp()
        self.jobs = Jobs(self.qmp)
        self.env = env
        self.outcomes = {}

    def reset(self):
        """Every node of ours back in io0 (a round may have moved it)."""
        for name in NODES:
            self.qmp.cmd('x-blockdev-set-iothread', node_name=name,
                         iothread='io0', force=True)

    def start_mirror(self, job, named):
        """A READY mirror src0 -> tgt0; the name of its filter node."""
        args = dict(job_id=job, device='src0', target='tgt0', sync='full')
        if named:
            args['filter_node_name'] = 'mtop'
        self.qmp.cmd('blockdev-mirror', **args)
        self.jobs.ready(job)
        filters = node_names(self.qmp, drv='mirror_top')
        assert_eq(len(filters), 1, f'mirror_top nodes of {job}')
        if named:
            assert_eq(filters[0], 'mtop', 'the filter node name')
        return filters[0]

    def round(self, n, named, second):
        """Mirror, then job-cancel and @second(self, filter, n) in one
        write; check both replies, wait for the job, undo what the
        second command did."""
        self.reset()
        job = f'm{n}'
        node = self.start_mirror(job, named)
        command, args, allowed, undo = second(self, node, n)
        cancel, reply = pipeline(self.qmp, [('job-cancel', {'id': job}),
                                            (command, args)])
        assert_eq(cancel, {'return': {}, 'id': cancel.get('id')},
                  f'round {n}: job-cancel of a READY job')
        allowed = allowed | missing_node_errors(command, node)
        ok = check_reply(reply, allowed, f'round {n}: {command} {args}')
        key = 'ok' if ok else reply['error']['desc'].replace(node, 'NODE')
        self.outcomes[key] = self.outcomes.get(key, 0) + 1
        self.jobs.gone(job)
        if ok and undo:
            undo(self, n)
        self.jobs.drop()

    def check_alive(self):
        """query-version answers, and an NBD client reads the source's
        data through a new export."""
        version = self.qmp.cmd('query-version')
        assert 'qemu' in version, version
        # In the main loop: QSD 7.2 aborts when a client leaves an export
        # in an iothread (nbd_blockdev_client_closed: Assertion
        # `qemu_in_main_thread() && nbd_server' failed).
        self.qmp.cmd('x-blockdev-set-iothread', node_name='src0',
                     iothread=None, force=True)
        self.qmp.cmd('block-export-add', type='nbd', id='check',
                     node_name='src0', name='check')
        h = nbd.NBD()
        h.set_export_name('check')
        h.connect_unix(self.env.path('nbd.sock'))
        for off in (0, SIZE // 2, SIZE - MiB):
            assert_eq(h.pread(MiB, off) == self.source_data[off:off + MiB],
                      True, f'source data at {off} through the export')
        h.shutdown()
        self.qmp.cmd('block-export-del', id='check')
        self.jobs.wait('BLOCK_EXPORT_DELETED', id='check')

    def finish(self):
        print(f'  replies over {ROUNDS} rounds: {self.outcomes}')
        self.check_alive()
        self.qmp.cmd('quit')
        self.daemon.wait(expect_rc=0)
        assert_no_sanitizer_report(self.daemon.stderr)


def run_rounds(env, named, second):
    race = Race(env)
    for n in range(ROUNDS):
        with failing_daemon(race.daemon, f'round {n}'):
            race.round(n, named, second)
    with failing_daemon(race.daemon, 'after the rounds'):
        race.finish()


# --- The second commands: (command, arguments, errors allowed besides
# --- the missing node's, what undoes a success) -----------------------------

def set_iothread(race, node, n):
    return ('x-blockdev-set-iothread',
            {'node-name': node, 'iothread': 'io1', 'force': True},
            # The job still holds the node: it may refuse to move.
            {f"block job 'm{n}' cannot move to another iothread"}, None)


def wait_job(job):
    def undo(race, n):
        race.qmp.cmd_raw('job-cancel', {'id': job})
        race.jobs.gone(job)
    return undo


def backup(race, node, n):
    return ('blockdev-backup',
            {'job-id': f'b{n}', 'device': node, 'target': 'bak0',
             'sync': 'full'},
            # While the cancelled job still holds its filter (QSD 7.2 says
            # the same of a mirror's filter while the job runs).
            {f"Node '{node}' is busy: block device is in use by block job: "
             f"mirror"},
            wait_job(f'b{n}'))


def mirror(race, node, n):
    return ('blockdev-mirror',
            {'job-id': f'n{n}', 'device': node, 'target': 'bak0',
             'sync': 'full'},
            # QSD 7.2's words for a node a job works on, while it does.
            {'Need a root block node'}, wait_job(f'n{n}'))


def export(race, node, n):
    def undo(race, n):
        race.qmp.cmd('block-export-del', id=f'e{n}')
        race.jobs.wait('BLOCK_EXPORT_DELETED', id=f'e{n}')
    return ('block-export-add',
            {'type': 'nbd', 'id': f'e{n}', 'node-name': node,
             'iothread': 'io1'},
            set(), undo)


def copy_before_write(race, node, n):
    def undo(race, n):
        race.qmp.cmd('blockdev-del', node_name=f'cbw{n}')
    return ('blockdev-add',
            {'driver': 'copy-before-write', 'node-name': f'cbw{n}',
             'file': node, 'target': 'cbt0'},
            set(), undo)


# --- Tests --------------------------------------------------------------------

@test
def test_set_iothread_of_mirror_filter_while_job_cancels(env):
    run_rounds(env, True, set_iothread)


@test
def test_backup_of_mirror_filter_while_job_cancels(env):
    run_rounds(env, True, backup)


@test
def test_mirror_of_mirror_filter_while_job_cancels(env):
    run_rounds(env, True, mirror)


@test
def test_export_of_mirror_filter_while_job_cancels(env):
    run_rounds(env, True, export)


@test
def test_copy_before_write_over_mirror_filter_while_job_cancels(env):
    run_rounds(env, True, copy_before_write)


@test
def test_set_iothread_of_generated_filter_name_while_job_cancels(env):
    run_rounds(env, False, set_iothread)


@test
def test_backup_of_generated_filter_name_while_job_cancels(env):
    run_rounds(env, False, backup)


@test
def test_mirror_of_generated_filter_name_while_job_cancels(env):
    run_rounds(env, False, mirror)


@test
def test_export_of_generated_filter_name_while_job_cancels(env):
    run_rounds(env, False, export)


@test
def test_copy_before_write_over_generated_filter_name_while_job_cancels(env):
    run_rounds(env, False, copy_before_write)


if __name__ == '__main__':
    main()
