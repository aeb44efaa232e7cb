#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""QMP object-add, object-del and query-iothreads: iothreads are created
with QEMU's properties, listed in creation order, refused with a message
naming what is wrong, and never deleted while something runs in them."""

import os
import resource
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (  # noqa: E402
    SkipTest, assert_eq, assert_in, assert_qmp_error, blockd_binary, main,
    test,
)

INT64_MAX = 2**63 - 1
RANGE = f'must be between 0 and {INT64_MAX}'


def iothreads(qmp):
    return {t['id']: t for t in qmp.cmd('query-iothreads')}


@test
def test_object_add_defaults(env):
    d = env.start([])
    qmp = env.qmp()
    assert_eq(qmp.cmd('query-iothreads'), [], 'no iothreads at start')
    assert_eq(qmp.cmd('object-add', qom_type='iothread', id='io0'), {})
    [info] = qmp.cmd('query-iothreads')
    assert_eq(sorted(info), ['aio-max-batch', 'id', 'poll-grow',
                             'poll-max-ns', 'poll-shrink', 'thread-id'],
              'IOThreadInfo keys')
    assert_eq(info['id'], 'io0')
    assert_eq(info['poll-max-ns'], 32768, "QEMU's default poll-max-ns")
    assert_eq((info['poll-grow'], info['poll-shrink'],
               info['aio-max-batch']), (0, 0, 0))
    # thread-id is a thread of the daemon, not the daemon's main thread.
    tid = info['thread-id']
    assert tid != d.pid, 'thread-id is the main thread'
    assert os.path.exists(f'/proc/{d.pid}/task/{tid}'), \
        f'thread {tid} is not a thread of {d.pid}'


@test
def test_object_add_properties(env):
    d = env.start([])
    qmp = env.qmp()
    qmp.cmd('object-add', qom_type='iothread', id='io0')
    qmp.cmd('object-add', **{'qom-type': 'iothread', 'id': 'io1',
                             'poll-max-ns': 0, 'poll-grow': 2,
                             'poll-shrink': 4, 'aio-max-batch': 16})
    qmp.cmd('object-add', qom_type='iothread', id='a.b-c_d')
    listed = qmp.cmd('query-iothreads')
    assert_eq([t['id'] for t in listed], ['io0', 'io1', 'a.b-c_d'],
              'creation order')
    io1 = listed[1]
    assert_eq((io1['poll-max-ns'], io1['poll-grow'], io1['poll-shrink'],
               io1['aio-max-batch']), (0, 2, 4, 16))
    assert_eq(len({t['thread-id'] for t in listed}), 3, 'one thread each')
    d.stop()


@test
def test_object_add_command_line(env):
    """--object is keyval: numbers arrive as strings and are converted."""
    d = env.start(['--object', 'iothread,id=io0,poll-max-ns=1000,poll-grow=2',
                   '--object', 'qom-type=iothread,id=io1'])
    listed = env.qmp().cmd('query-iothreads')
    assert_eq([(t['id'], t['poll-max-ns'], t['poll-grow']) for t in listed],
              [('io0', 1000, 2), ('io1', 32768, 0)])
    d.stop()


@test
def test_object_add_command_line_errors(env):
    r = env.run(['--object', 'iothread,id=io0',
                 '--object', 'iothread,id=io0'])
    assert_eq(r.returncode, 1, 'exit status')
    assert_in("--object iothread,id=io0: An object with id 'io0' already "
              "exists", r.stderr)
    r = env.run(['--object', 'memory-backend-ram,id=m0'])
    assert_eq(r.returncode, 1, 'exit status')
    assert_in("'memory-backend-ram'", r.stderr)
    r = env.run(['--object', 'iothread,id=io0,poll-max-ns=fast'])
    assert_eq(r.returncode, 1, 'exit status')
    assert_in("'poll-max-ns': expected integer", r.stderr)


@test
def test_object_add_errors(env):
    d = env.start([])
    qmp = env.qmp()
    qmp.cmd('object-add', qom_type='iothread', id='io0')

    e = assert_qmp_error(lambda: qmp.cmd('object-add', qom_type='secret',
                                         id='s0'))
    assert_in("'qom-type'", e.desc)
    assert_in("'secret'", e.desc)
    assert_qmp_error(lambda: qmp.cmd('object-add', qom_type='iothread',
                                     id='io0'),
                     "An object with id 'io0' already exists")
    assert_qmp_error(lambda: qmp.cmd('object-add', qom_type='iothread',
                                     id='0io'),
                     "Parameter 'id' expects an identifier")
    assert_qmp_error(lambda: qmp.cmd('object-add', qom_type='iothread'),
                     "'id': missing required parameter")
    assert_qmp_error(lambda: qmp.cmd('object-add', id='x'),
                     "'qom-type': missing required parameter")
    for key in ('poll-max-ns', 'poll-grow', 'poll-shrink', 'aio-max-batch'):
        assert_qmp_error(lambda: qmp.cmd('object-add', **{
            'qom-type': 'iothread', 'id': 'x', key: -1}), f"'{key}': {RANGE}")
        # QMP is typed: no string conversion, unlike the command line.
        assert_qmp_error(lambda: qmp.cmd('object-add', **{
            'qom-type': 'iothread', 'id': 'x', key: '1'}),
            f"'{key}': expected integer")
    assert_qmp_error(lambda: qmp.cmd('object-add', qom_type='iothread',
                                     id='x', size=1),
                     "'size': unexpected parameter")
    # Nothing was left behind by the failures.
    assert_eq(list(iothreads(qmp)), ['io0'])
    d.stop()


def sanitized(binary):
    """Built with ASan or TSan (their allocators reserve address space as
    they please, so RLIMIT_AS means nothing to them)."""
    with open(binary, 'rb') as f:
        data = f.read()
    return b'__asan_init' in data or b'__tsan_init' in data


def vm_size(pid):
    """The process's address space in bytes."""
    with open(f'/proc/{pid}/statm') as f:
        return int(f.read().split()[0]) * os.sysconf('SC_PAGESIZE')


@test
def test_object_add_without_room_for_a_thread(env):
    # The daemon's address space is capped just above its size, so the
    # iothread's stack (8 MiB) cannot be mapped: object-add fails with an
    # error and the daemon goes on; with the room back, it works.
    if sanitized(blockd_binary()):
        raise SkipTest('RLIMIT_AS under a sanitizer')
    d = env.start([])
    qmp = env.qmp()
    old = resource.prlimit(d.pid, resource.RLIMIT_AS)
    resource.prlimit(d.pid, resource.RLIMIT_AS,
                     (vm_size(d.pid) + (2 << 20), old[1]))
    try:
        e = assert_qmp_error(lambda: qmp.cmd('object-add',
                                             qom_type='iothread', id='io0'))
    finally:
        resource.prlimit(d.pid, resource.RLIMIT_AS, old)
    assert e.desc.startswith("iothread 'io0': Cannot create thread "
                             "'iothread-io0': "), e.desc
    assert_eq(iothreads(qmp), {}, 'nothing left behind')
    assert_eq(qmp.cmd('object-add', qom_type='iothread', id='io0'), {})
    assert_eq(list(iothreads(qmp)), ['io0'])
    d.stop()


@test
def test_object_del(env):
    d = env.start([])
    qmp = env.qmp()
    qmp.cmd('object-add', qom_type='iothread', id='io0')
    qmp.cmd('object-add', qom_type='iothread', id='io1')
    assert_eq(qmp.cmd('object-del', id='io0'), {})
    assert_eq(list(iothreads(qmp)), ['io1'])
    assert_qmp_error(lambda: qmp.cmd('object-del', id='io0'),
                     "object 'io0' not found")
    assert_qmp_error(lambda: qmp.cmd('object-del'),
                     "'id': missing required parameter")
    # The id can be used again.
    qmp.cmd('object-add', qom_type='iothread', id='io0')
    assert_eq(list(iothreads(qmp)), ['io1', 'io0'])
    d.stop()


@test
def test_object_del_in_use_by_node(env):
    d = env.start(['--object', 'iothread,id=io0',
                   '--blockdev', 'driver=null-co,node-name=n0,size=1M'])
    qmp = env.qmp()
    qmp.cmd('x-blockdev-set-iothread', node_name='n0', iothread='io0')
    assert_qmp_error(lambda: qmp.cmd('object-del', id='io0'),
                     "object 'io0' is in use, can not be deleted: "
                     "node 'n0' runs in it")
    assert_eq(list(iothreads(qmp)), ['io0'], 'still there')
    qmp.cmd('x-blockdev-set-iothread', node_name='n0', iothread=None)
    assert_eq(qmp.cmd('object-del', id='io0'), {})
    d.stop()


@test
def test_object_del_in_use_by_implicit_child(env):
    """Every node of a moved subtree counts, named or not."""
    d = env.start(['--object', 'iothread,id=io0'])
    qmp = env.qmp()
    qmp.cmd('blockdev-add', driver='raw', node_name='r0',
            file={'driver': 'null-co', 'size': 1 << 20})
    qmp.cmd('x-blockdev-set-iothread', node_name='r0', iothread='io0')
    e = assert_qmp_error(lambda: qmp.cmd('object-del', id='io0'))
    assert_in("object 'io0' is in use, can not be deleted: node '", e.desc)
    qmp.cmd('blockdev-del', node_name='r0')
    assert_eq(qmp.cmd('object-del', id='io0'), {})
    d.stop()


@test
def test_shutdown_with_nodes_in_iothreads(env):
    """Nodes in iothreads are closed before their iothreads go."""
    image = env.make_image(size=1 << 20)
    d = env.start(['--object', 'iothread,id=io0',
                   '--object', 'iothread,id=io1',
                   '--blockdev', f'driver=file,node-name=f0,filename={image}',
                   '--blockdev', 'driver=raw,node-name=r0,file=f0',
                   '--blockdev', 'driver=null-co,node-name=n0'])
    qmp = env.qmp()
    qmp.cmd('x-blockdev-set-iothread', node_name='r0', iothread='io0')
    qmp.cmd('x-blockdev-set-iothread', node_name='n0', iothread='io1')
    d.stop()


@test
def test_quit_with_iothreads(env):
    d = env.start(['--object', 'iothread,id=io0'])
    qmp = env.qmp()
    qmp.cmd('object-add', qom_type='iothread', id='io1')
    d.quit(qmp)


if __name__ == '__main__':
    main()
