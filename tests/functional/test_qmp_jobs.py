#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""The job commands answer as qemu-storage-daemon 7.2's do: blockd has
every job command QSD has, and with no job to act on, each command gets
the same error class and message from both daemons, and the queries the
same empty lists.  (No job
type can be started from QMP yet: the job core's behaviour is tested in
tests/unit/test-job.c.)"""

import signal

from harness import (QMPError, assert_eq, main, require_program, test)

QSD = require_program('qemu-storage-daemon')

JOB_COMMANDS = {
    'job-pause', 'job-resume', 'job-cancel', 'job-complete', 'job-dismiss',
    'job-finalize', 'query-jobs', 'block-job-cancel', 'block-job-complete',
    'block-job-pause', 'block-job-resume', 'block-job-finalize',
    'block-job-dismiss', 'block-job-set-speed', 'query-block-jobs',
}

# (command, arguments): every job command with an unknown job.
CALLS = [
    ('job-pause', {'id': 'j0'}),
    ('job-resume', {'id': 'j0'}),
    ('job-cancel', {'id': 'j0'}),
    ('job-complete', {'id': 'j0'}),
    ('job-dismiss', {'id': 'j0'}),
    ('job-finalize', {'id': 'j0'}),
    ('block-job-cancel', {'device': 'j0'}),
    ('block-job-cancel', {'device': 'j0', 'force': True}),
    ('block-job-complete', {'device': 'j0'}),
    ('block-job-pause', {'device': 'j0'}),
    ('block-job-resume', {'device': 'j0'}),
    ('block-job-finalize', {'id': 'j0'}),
    ('block-job-dismiss', {'id': 'j0'}),
    ('block-job-set-speed', {'device': 'j0', 'speed': 1024}),
    ('block-job-set-speed', {'device': 'j0', 'speed': -1}),
    ('query-jobs', None),
    ('query-block-jobs', None),
]


def answers(env, binary):
    """Each call's reply as ('return', value) or ('error', class, desc),
    and the daemon's job-related commands."""
    d = env.start([], binary=binary)
    qmp = env.qmp()
    cmds = {c['name'] for c in qmp.cmd('query-commands')}
    out = []
    for name, args in CALLS:
        try:
            out.append(('return', qmp.cmd(name, **(args or {}))))
        except QMPError as e:
            out.append(('error', e.error_class, e.desc))
    qmp.close()
    d.stop(signal.SIGTERM, expect_rc=0)
    jobish = {c for c in cmds if 'job' in c and not c.startswith('x-')}
    return out, jobish


@test
def test_job_commands_as_qsd(env):
    qsd, qsd_cmds = answers(env, QSD)
    blockd, blockd_cmds = answers(env, None)
    assert_eq(sorted(qsd_cmds - blockd_cmds), [],
              'job commands of QSD that blockd lacks')
    assert_eq(sorted(blockd_cmds - JOB_COMMANDS), [],
              'job commands this test does not know')
    for (name, args), got, want in zip(CALLS, blockd, qsd):
        assert_eq(got, want, f'{name} {args}')


@test
def test_block_job_finalize_takes_id(env):
    # QEMU's block-job-finalize and block-job-dismiss take 'id', unlike
    # the older block-job-* commands.
    env.start([])
    qmp = env.qmp()
    for name in ('block-job-finalize', 'block-job-dismiss'):
        try:
            qmp.cmd(name, device='j0')
        except QMPError as e:
            assert_eq(e.error_class, 'GenericError', name)
            assert 'device' in e.desc or "'id'" in e.desc, e.desc
        else:
            raise AssertionError(f'{name} accepted device=')


if __name__ == '__main__':
    main()
