#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""The same command lines start qemu-storage-daemon and blockd alike: both
accept them and answer query-named-block-nodes with the same nodes and
drivers; both refuse the same bad ones."""

import signal

from harness import (assert_eq, main, require_program, test)

QSD = require_program('qemu-storage-daemon')


def setup_args(env):
    image = env.make_image(size=32 * 1024 * 1024)
    return ['--object', 'iothread,id=io0',
            '--blockdev', f'driver=file,node-name=file0,filename={image}',
            '--blockdev', 'driver=raw,node-name=disk0,file=file0',
            '--blockdev', 'driver=null-co,node-name=null0,size=67108864',
            '--blockdev', 'null-co,node-name=null1,read-only=on',
            '--blockdev', '{"driver": "raw", "node-name": "disk1", '
            '"file": "null1", "read-only": true}',
            '--pidfile', env.path('daemon.pid')]


def nodes_of(nodes):
    """What both must agree on, per node."""
    return {n['node-name']: {'drv': n['drv'], 'ro': n['ro'],
                             'virtual-size': n['image']['virtual-size']}
            for n in nodes}


def run_daemon(env, binary):
    """Start @binary with the common command line; its view of the nodes."""
    d = env.start(setup_args(env), binary=binary)
    qmp = env.qmp()
    nodes = nodes_of(qmp.cmd('query-named-block-nodes'))
    qmp.close()
    d.stop(signal.SIGTERM, expect_rc=0)
    return nodes


@test
def test_same_command_line(env):
    # One after the other: both lock the image.
    qsd = run_daemon(env, QSD)
    blockd = run_daemon(env, None)
    assert_eq(sorted(blockd), ['disk0', 'disk1', 'file0', 'null0', 'null1'])
    assert_eq(blockd, qsd, 'blockd vs qemu-storage-daemon')


BAD_COMMAND_LINES = [
    ['--blockdev', 'driver=file,node-name=f0'],
    ['--blockdev', 'driver=null-co,node-name=n0,size=lots'],
    ['--blockdev', 'driver=null-co,node-name=n0,bogus=on'],
    ['--blockdev', 'raw,node-name=r0,file=nope'],
    ['--blockdev', 'null-co,node-name=n0', '--blockdev',
     'null-co,node-name=n0'],
    ['--blockdev', '{"driver": "null-co"'],
    ['--object', 'iothread'],
    ['--monitor', 'nope'],
    ['--bogus'],
    ['stray'],
]


@test
def test_same_refusals(env):
    for args in BAD_COMMAND_LINES:
        for binary in [QSD, None]:
            r = env.run(args, binary=binary)
            assert_eq(r.returncode, 1, f'{binary or "blockd"} {args}')
            assert r.stderr, f'{binary or "blockd"} {args}: no message'
    assert_eq(env.files(), [])


if __name__ == '__main__':
    main()
