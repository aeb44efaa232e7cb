#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""QMP commands on block nodes: blockdev-add, blockdev-del,
query-named-block-nodes, x-blockdev-set-iothread, block_resize and
query-blockstats, on their success and error paths, from QMP (typed JSON)
and from the command line (keyval)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (  # noqa: E402
    SkipTest, assert_eq, assert_in, assert_qmp_error, main, node_summary,
    qsd_binary, test,
)

MiB = 1 << 20


def nodes(qmp):
    """query-named-block-nodes as {node-name: info}."""
    return {n['node-name']: n for n in qmp.cmd('query-named-block-nodes')}


def add(qmp, **definition):
    """blockdev-add with QMP's key names (driver-specific keys as given)."""
    return qmp.cmd('blockdev-add', **definition)


def add_def(qmp, definition):
    return qmp.cmd_raw('blockdev-add', definition)


def expect_add_error(qmp, definition, desc, error_class='GenericError'):
    """blockdev-add fails with exactly @desc and leaves no node behind."""
    before = nodes(qmp)
    resp = add_def(qmp, definition)
    assert 'error' in resp, f'blockdev-add {definition} succeeded'
    assert_eq(resp['error']['desc'], desc, 'error desc')
    assert_eq(resp['error']['class'], error_class, 'error class')
    assert_eq(sorted(nodes(qmp)), sorted(before), 'nodes after the failure')


# --- blockdev-add -----------------------------------------------------------

@test
def test_blockdev_add_drivers(env):
    image = env.make_image(size=4 * MiB)
    d = env.start([])
    qmp = env.qmp()
    assert_eq(add(qmp, driver='file', node_name='f0', filename=image), {})
    assert_eq(add(qmp, driver='raw', node_name='r0', file='f0'), {})
    assert_eq(add(qmp, driver='null-co', node_name='n0'), {})
    assert_eq(node_summary(qmp.cmd('query-named-block-nodes')),
              {'f0': 'file', 'r0': 'raw', 'n0': 'null-co'})
    info = nodes(qmp)
    assert_eq(info['r0']['image']['virtual-size'], 4 * MiB)
    assert_eq(info['n0']['image']['virtual-size'], 1 << 30,
              "null-co's default size")
    d.stop()


@test
def test_query_named_block_nodes_fields(env):
    image = env.make_image(size=64 * MiB)
    with open(image, 'r+b') as f:          # one MiB of data, the rest holes
        f.seek(8 * MiB)
        f.write(b'\xa5' * MiB)
        f.flush()
        os.fsync(f.fileno())
    d = env.start([])
    qmp = env.qmp()
    add(qmp, driver='file', node_name='f0', filename=image, read_only=True,
        cache={'direct': True, 'no-flush': False})
    qmp.cmd('blockdev-add', **{'driver': 'raw', 'node-name': 'r0',
                               'file': 'f0', 'read-only': True,
                               'detect-zeroes': 'on'})
    add(qmp, driver='null-co', node_name='n0', size=MiB,
        cache={'no-flush': True})
    assert_eq(qmp.cmd('query-named-block-nodes', flat=True),
              qmp.cmd('query-named-block-nodes'), 'flat is accepted')
    info = nodes(qmp)

    f0 = info['f0']
    assert_eq((f0['node-name'], f0['drv'], f0['ro'], f0['file']),
              ('f0', 'file', True, image))
    assert_eq(f0['cache'], {'writeback': True, 'direct': True,
                            'no-flush': False})
    assert_eq(f0['detect_zeroes'], 'off')
    assert_eq(f0['encrypted'], False)
    assert_eq(f0['image']['virtual-size'], 64 * MiB)
    assert_eq(f0['image']['filename'], image)
    actual = f0['image']['actual-size']
    assert_eq(actual, os.stat(image).st_blocks * 512, 'actual-size')
    assert MiB <= actual < 8 * MiB, f'sparse file: actual-size {actual}'

    r0 = info['r0']
    assert_eq((r0['drv'], r0['ro'], r0['file'], r0['detect_zeroes']),
              ('raw', True, image, 'on'))
    assert_eq(r0['image']['virtual-size'], 64 * MiB)
    assert_eq(r0['image']['format'], 'raw')

    n0 = info['n0']
    assert_eq((n0['drv'], n0['ro']), ('null-co', False))
    assert_eq(n0['cache'], {'writeback': True, 'direct': False,
                            'no-flush': True})
    assert_eq(n0['image']['virtual-size'], MiB)
    d.stop()


@test
def test_blockdev_add_nested(env):
    image = env.make_image(size=2 * MiB)
    d = env.start([])
    qmp = env.qmp()
    add(qmp, driver='raw', node_name='r0',
        file={'driver': 'file', 'filename': image})
    add(qmp, driver='raw', node_name='r1',
        file={'driver': 'null-co', 'node-name': 'c1', 'size': MiB})
    info = nodes(qmp)
    assert_eq(info['c1']['drv'], 'null-co', 'named nested child')
    implicit = [n for n in info if n.startswith('#')]
    assert_eq(len(implicit), 1, f'one implicit node in {sorted(info)}')
    assert_eq(info[implicit[0]]['drv'], 'file')
    assert_eq(info[implicit[0]]['file'], image)
    assert_eq(info['r0']['file'], image, "the parent's file name")
    assert_eq(info['r0']['image']['virtual-size'], 2 * MiB)
    d.stop()


@test
def test_blockdev_add_command_line(env):
    """--blockdev is keyval: nested keys and conversions of every leaf."""
    image = env.make_image(size=MiB)
    d = env.start(['--blockdev', f'file,node-name=f0,filename={image},'
                   'cache.no-flush=on,read-only=on,locking=off',
                   '--blockdev', 'driver=raw,node-name=r0,'
                   'file.driver=null-co,file.node-name=c0,file.size=2M,'
                   'file.read-zeroes=on,file.cache.no-flush=on',
                   '--blockdev', '{"driver": "null-co", "node-name": "n0", '
                   '"size": 4096}'])
    info = nodes(env.qmp())
    assert_eq((info['f0']['ro'], info['f0']['cache']['no-flush']),
              (True, True))
    assert_eq(info['c0']['image']['virtual-size'], 2 * MiB)
    assert_eq(info['c0']['cache']['no-flush'], True)
    assert_eq(info['r0']['image']['virtual-size'], 2 * MiB)
    assert_eq(info['n0']['image']['virtual-size'], 4096)
    d.stop()


@test
def test_blockdev_add_command_line_errors(env):
    r = env.run(['--blockdev', 'driver=raw,node-name=r0,'
                 'file.driver=null-co,file.size=big'])
    assert_eq(r.returncode, 1, 'exit status')
    assert_in("'file.size': expected size", r.stderr)
    r = env.run(['--blockdev', 'driver=null-co,node-name=n0,size=1M',
                 '--blockdev', 'driver=null-co,node-name=n0'])
    assert_eq(r.returncode, 1, 'exit status')
    assert_in("--blockdev driver=null-co,node-name=n0: Duplicate nodes "
              "with node-name='n0'", r.stderr)


@test
def test_blockdev_add_wrong_types(env):
    """QMP is typed, at every depth: no keyval conversions."""
    image = env.make_image()
    d = env.start([])
    qmp = env.qmp()
    expect_add_error(qmp, {'driver': 'null-co', 'node-name': 'n0',
                           'size': '1M'}, "'size': expected size")
    expect_add_error(qmp, {'driver': 'null-co', 'node-name': 'n0',
                           'read-only': 'on'}, "'read-only': expected boolean")
    expect_add_error(qmp, {'driver': 'file', 'node-name': 'f0',
                           'filename': image, 'cache': {'direct': 1}},
                     "'cache.direct': expected boolean")
    expect_add_error(qmp, {'driver': 'file', 'node-name': 'f0',
                           'filename': image, 'aio': 'fast'},
                     "'aio': expected one of 'threads', 'native', "
                     "'io_uring'")
    expect_add_error(qmp, {'driver': 'raw', 'node-name': 'r0', 'file': 7},
                     "'file': expected node name or object")
    expect_add_error(qmp, {'driver': 7, 'node-name': 'r0'},
                     "'driver': expected string")
    d.stop()


@test
def test_blockdev_add_nested_wrong_types(env):
    """Nested definitions are typed as strictly as the top level."""
    image = env.make_image()
    d = env.start([])
    qmp = env.qmp()
    expect_add_error(qmp, {'driver': 'raw', 'node-name': 'r0',
                           'file': {'driver': 'null-co', 'size': '1M'}},
                     "'file.size': expected size")
    expect_add_error(qmp, {'driver': 'raw', 'node-name': 'r0',
                           'file': {'driver': 'file', 'filename': image,
                                    'cache': {'direct': 'on'}}},
                     "'file.cache.direct': expected boolean")
    expect_add_error(qmp, {'driver': 'raw', 'node-name': 'r0',
                           'file': {'driver': 'raw',
                                    'file': {'driver': 'null-co',
                                             'read-zeroes': 'yes'}}},
                     "'file.file.read-zeroes': expected boolean")
    d.stop()


@test
def test_blockdev_add_unknown_keys(env):
    image = env.make_image()
    d = env.start([])
    qmp = env.qmp()
    expect_add_error(qmp, {'driver': 'null-co', 'node-name': 'n0',
                           'bogus': 1}, "'bogus': unexpected parameter")
    # A key of another driver.
    expect_add_error(qmp, {'driver': 'null-co', 'node-name': 'n0',
                           'filename': image},
                     "'filename': unexpected parameter")
    expect_add_error(qmp, {'driver': 'raw', 'node-name': 'r0',
                           'file': {'driver': 'file', 'filename': image,
                                    'size': 1}},
                     "'file.size': unexpected parameter")
    expect_add_error(qmp, {'driver': 'file', 'node-name': 'f0',
                           'filename': image, 'cache': {'writeback': True}},
                     "'cache.writeback': unexpected parameter")
    d.stop()


@test
def test_blockdev_add_errors(env):
    image = env.make_image(size=MiB)
    d = env.start([])
    qmp = env.qmp()
    expect_add_error(qmp, {'node-name': 'n0'},
                     "'driver': missing required parameter")
    expect_add_error(qmp, {'driver': 'qcow9', 'node-name': 'n0'},
                     "'driver': expected one of 'file', 'raw', 'null-co', "
                     "'blkdebug', 'copy-before-write'")
    expect_add_error(qmp, {'driver': 'null-co'},
                     "'node-name' must be specified for the root node")
    expect_add_error(qmp, {'driver': 'null-co', 'node-name': '0n'},
                     "Invalid node-name: '0n'")
    # QEMU's limit: 31 bytes; checked after the characters and duplicates
    qmp.cmd('blockdev-add', driver='null-co', node_name='n' * 31)
    expect_add_error(qmp, {'driver': 'null-co', 'node-name': 'n' * 31},
                     f"Duplicate nodes with node-name='{'n' * 31}'")
    expect_add_error(qmp, {'driver': 'null-co', 'node-name': 'n' * 32},
                     'Node name too long')
    expect_add_error(qmp, {'driver': 'null-co', 'node-name': 'n' * 4097},
                     'Node name too long')
    expect_add_error(qmp, {'driver': 'null-co', 'node-name': 'n y' * 20},
                     f"Invalid node-name: '{'n y' * 20}'")
    qmp.cmd('blockdev-del', node_name='n' * 31)
    expect_add_error(qmp, {'driver': 'file', 'node-name': 'f0'},
                     "'filename': missing required parameter")
    expect_add_error(qmp, {'driver': 'raw', 'node-name': 'r0',
                           'file': 'nope'},
                     "'file': no node named 'nope'")
    missing = env.path('missing.raw')
    expect_add_error(qmp, {'driver': 'file', 'node-name': 'f0',
                           'filename': missing},
                     f"Could not open '{missing}': No such file or "
                     "directory")

    add(qmp, driver='null-co', node_name='n0')
    expect_add_error(qmp, {'driver': 'null-co', 'node-name': 'n0'},
                     "Duplicate nodes with node-name='n0'")
    # A nested child with a taken name.
    expect_add_error(qmp, {'driver': 'raw', 'node-name': 'r0',
                           'file': {'driver': 'null-co', 'node-name': 'n0'}},
                     "Duplicate nodes with node-name='n0'")
    # Failing after the nested child was opened leaves no child behind.
    expect_add_error(qmp, {'driver': 'raw', 'node-name': 'r0',
                           'offset': 2 * MiB,
                           'file': {'driver': 'file', 'node-name': 'c0',
                                    'filename': image}},
                     "'offset' (2097152) is beyond the end of 'c0' "
                     "(1048576 bytes)")
    assert_eq(sorted(nodes(qmp)), ['n0'])
    d.stop()


# --- blockdev-del -----------------------------------------------------------


@test
def test_blockdev_del(env):
    image = env.make_image()
    d = env.start([])
    qmp = env.qmp()
    add(qmp, driver='file', node_name='f0', filename=image)
    add(qmp, driver='raw', node_name='r0', file='f0')
    assert_qmp_error(lambda: qmp.cmd('blockdev-del', node_name='f0'),
                     "Node 'f0' is busy: used by node 'r0' as 'file'")
    assert_eq(qmp.cmd('blockdev-del', node_name='r0'), {})
    assert_eq(sorted(nodes(qmp)), ['f0'])
    assert_eq(qmp.cmd('blockdev-del', node_name='f0'), {})
    assert_eq(nodes(qmp), {})
    # The image is free again: a new node can lock it.
    add(qmp, driver='file', node_name='f0', filename=image)
    d.stop()


@test
def test_blockdev_del_busy_names_every_user(env):
    d = env.start([])
    qmp = env.qmp()
    add(qmp, driver='null-co', node_name='n0', read_only=True)
    add(qmp, driver='raw', node_name='r0', file='n0', read_only=True)
    add(qmp, driver='raw', node_name='r1', file='n0', read_only=True)
    e = assert_qmp_error(lambda: qmp.cmd('blockdev-del', node_name='n0'))
    assert_in("Node 'n0' is busy: used by ", e.desc)
    assert_in("node 'r0' as 'file'", e.desc)
    assert_in("node 'r1' as 'file'", e.desc)
    d.stop()


@test
def test_blockdev_del_implicit_children(env):
    image = env.make_image()
    d = env.start([])
    qmp = env.qmp()
    add(qmp, driver='raw', node_name='r0',
        file={'driver': 'raw', 'node-name': 'mid',
              'file': {'driver': 'file', 'filename': image}})
    info = nodes(qmp)
    assert_eq(len(info), 3, f'nodes {sorted(info)}')
    implicit = [n for n in info if n.startswith('#')][0]
    assert_qmp_error(lambda: qmp.cmd('blockdev-del', node_name='mid'),
                     "Node 'mid' is not owned by the monitor")
    assert_qmp_error(lambda: qmp.cmd('blockdev-del', node_name=implicit),
                     f"Node '{implicit}' is not owned by the monitor")
    assert_eq(qmp.cmd('blockdev-del', node_name='r0'), {})
    assert_eq(nodes(qmp), {}, 'children vanish with their parent')
    # The image was closed with them: opening it read-write works.
    add(qmp, driver='file', node_name='f0', filename=image)
    d.stop()


@test
def test_blockdev_del_errors(env):
    d = env.start(['--blockdev', 'driver=null-co,node-name=n0'])
    qmp = env.qmp()
    assert_qmp_error(lambda: qmp.cmd('blockdev-del', node_name='nope'),
                     "Failed to find node with node-name='nope'")
    assert_qmp_error(lambda: qmp.cmd('blockdev-del'),
                     "'node-name': missing required parameter")
    assert_qmp_error(lambda: qmp.cmd('blockdev-del', node_name=1),
                     "'node-name': expected string")
    # A node from the command line is the monitor's like any other.
    assert_eq(qmp.cmd('blockdev-del', node_name='n0'), {})
    d.stop()


# --- x-blockdev-set-iothread ----------------------------------------------


@test
def test_set_iothread_back_and_forth(env):
    image = env.make_image()
    d = env.start(['--object', 'iothread,id=io0',
                   '--object', 'iothread,id=io1',
                   '--blockdev', f'driver=file,node-name=f0,filename={image}',
                   '--blockdev', 'driver=raw,node-name=r0,file=f0'])
    qmp = env.qmp()
    for target in ('io0', 'io1', None, 'io0', 'io0', None, None):
        assert_eq(qmp.cmd('x-blockdev-set-iothread', node_name='r0',
                          iothread=target), {}, f'move to {target}')
        for io in ('io0', 'io1'):
            resp = qmp.cmd_raw('object-del', {'id': io})
            if io == target:
                # The whole subtree moved with r0: its child counts too.
                assert_in('error', resp, f'{io} in use')
                assert_in(f"object '{io}' is in use", resp['error']['desc'])
            else:
                assert_eq(resp.get('return'), {}, f'{io} free: {resp}')
                qmp.cmd('object-add', qom_type='iothread', id=io)
    # The node still works after all that moving.
    assert_eq(qmp.cmd('block_resize', node_name='r0', size=2 * MiB), {})
    assert_eq(os.path.getsize(image), 2 * MiB)
    d.stop()


@test
def test_set_iothread_child_moves_its_parents(env):
    """As QEMU: only a BlockBackend user needs force; parent nodes move
    along with the child (a graph lives in one iothread)."""
    args = ['--object', 'iothread,id=io0',
            '--blockdev', 'driver=null-co,node-name=n0',
            '--blockdev', 'driver=raw,node-name=r0,file=n0']
    d = env.start(args)
    qmp = env.qmp()
    assert_eq(qmp.cmd('x-blockdev-set-iothread', node_name='n0',
                      iothread='io0'), {})
    e = assert_qmp_error(lambda: qmp.cmd('object-del', id='io0'))
    assert_in("object 'io0' is in use, can not be deleted: node '", e.desc)
    # Moving the parent back brings the child along too.
    assert_eq(qmp.cmd('x-blockdev-set-iothread', node_name='r0',
                      iothread=None), {})
    assert_eq(qmp.cmd('object-del', id='io0'), {})
    d.stop()


@test
def test_set_iothread_errors(env):
    d = env.start(['--object', 'iothread,id=io0',
                   '--blockdev', 'driver=null-co,node-name=n0'])
    qmp = env.qmp()
    assert_qmp_error(lambda: qmp.cmd('x-blockdev-set-iothread',
                                     node_name='nope', iothread='io0'),
                     "Failed to find node with node-name='nope'")
    assert_qmp_error(lambda: qmp.cmd('x-blockdev-set-iothread',
                                     node_name='n0', iothread='io9'),
                     "Cannot find iothread io9")
    assert_qmp_error(lambda: qmp.cmd('x-blockdev-set-iothread',
                                     node_name='n0', iothread=5),
                     "'iothread': expected string or null")
    assert_qmp_error(lambda: qmp.cmd('x-blockdev-set-iothread',
                                     node_name='n0'),
                     "'iothread': missing required parameter")
    assert_qmp_error(lambda: qmp.cmd('x-blockdev-set-iothread',
                                     node_name='n0', iothread='io0',
                                     force='yes'),
                     "'force': expected boolean")
    # Nothing moved: io0 can go.
    assert_eq(qmp.cmd('object-del', id='io0'), {})
    d.stop()


# --- block_resize -----------------------------------------------------------


@test
def test_block_resize_file(env):
    image = env.make_image(size=MiB)
    d = env.start(['--blockdev', f'driver=file,node-name=f0,filename={image}'])
    qmp = env.qmp()
    assert_eq(qmp.cmd('block_resize', node_name='f0', size=3 * MiB), {})
    assert_eq(os.path.getsize(image), 3 * MiB, 'file size on disk')
    assert_eq(nodes(qmp)['f0']['image']['virtual-size'], 3 * MiB)
    # Shrinking is allowed, as in QEMU.
    assert_eq(qmp.cmd('block_resize', node_name='f0', size=MiB // 2), {})
    assert_eq(os.path.getsize(image), MiB // 2)
    assert_eq(qmp.cmd('block_resize', node_name='f0', size=0), {})
    assert_eq(os.path.getsize(image), 0)
    d.stop()


@test
def test_block_resize_raw(env):
    image = env.make_image(size=MiB)
    d = env.start(['--blockdev', f'driver=file,node-name=f0,filename={image}',
                   '--blockdev', 'driver=raw,node-name=r0,file=f0'])
    qmp = env.qmp()
    assert_eq(qmp.cmd('block_resize', node_name='r0', size=5 * MiB), {})
    assert_eq(os.path.getsize(image), 5 * MiB, 'file size on disk')
    info = nodes(qmp)
    assert_eq(info['r0']['image']['virtual-size'], 5 * MiB)
    assert_eq(info['f0']['image']['virtual-size'], 5 * MiB)
    # A plain raw node passes its child through (as in QEMU): resizing the
    # file under it is allowed, and r0 follows its child's new size.
    assert_eq(qmp.cmd('block_resize', node_name='f0', size=2 * MiB), {})
    assert_eq(os.path.getsize(image), 2 * MiB, 'file size on disk')
    info = nodes(qmp)
    assert_eq(info['f0']['image']['virtual-size'], 2 * MiB)
    assert_eq(info['r0']['image']['virtual-size'], 2 * MiB)
    d.stop()


@test
def test_block_resize_errors(env):
    image = env.make_image(size=MiB)
    d = env.start(['--blockdev', f'driver=file,node-name=f0,filename={image},'
                   'read-only=on',
                   '--blockdev', 'driver=null-co,node-name=n0'])
    qmp = env.qmp()
    assert_qmp_error(lambda: qmp.cmd('block_resize', node_name='nope',
                                     size=MiB),
                     "Cannot find device='' nor node-name='nope'")
    assert_qmp_error(lambda: qmp.cmd('block_resize', device='drive0',
                                     size=MiB),
                     "Cannot find device='drive0' nor node-name='': blockd "
                     "has no devices, use 'node-name'")
    assert_qmp_error(lambda: qmp.cmd('block_resize', size=MiB),
                     "Cannot find device='' nor node-name=''")
    assert_qmp_error(lambda: qmp.cmd('block_resize', node_name='f0',
                                     size=-1),
                     "Parameter 'size' expects a >0 size")
    assert_qmp_error(lambda: qmp.cmd('block_resize', node_name='f0'),
                     "'size': missing required parameter")
    assert_qmp_error(lambda: qmp.cmd('block_resize', node_name='f0',
                                     size='2M'),
                     "'size': expected integer")
    e = assert_qmp_error(lambda: qmp.cmd('block_resize', node_name='f0',
                                         size=2 * MiB))
    assert_in('read-only', e.desc)
    assert_eq(os.path.getsize(image), MiB, 'read-only file unchanged')
    d.stop()


# --- query-blockstats -----------------------------------------------------

STATS_KEYS = sorted([
    'rd_bytes', 'wr_bytes', 'unmap_bytes', 'rd_operations',
    'wr_operations', 'flush_operations', 'unmap_operations',
    'rd_total_time_ns', 'wr_total_time_ns', 'flush_total_time_ns',
    'unmap_total_time_ns', 'wr_highest_offset', 'rd_merged', 'wr_merged',
    'unmap_merged', 'failed_rd_operations', 'failed_wr_operations',
    'failed_flush_operations', 'failed_unmap_operations',
    'invalid_rd_operations', 'invalid_wr_operations',
    'invalid_flush_operations', 'invalid_unmap_operations',
    'account_invalid', 'account_failed', 'timed_stats',
])


@test
def test_query_blockstats(env):
    d = env.start(['--blockdev', 'driver=null-co,node-name=n0',
                   '--blockdev', 'driver=raw,node-name=r0,file=n0'])
    qmp = env.qmp()
    # Nodes alone have no BlockBackend: nothing to report, as in QSD.
    assert_eq(qmp.cmd('query-blockstats'), [])
    assert_eq(qmp.cmd('query-blockstats', query_nodes=False), [])
    per_node = {s['node-name']: s
                for s in qmp.cmd('query-blockstats', query_nodes=True)}
    assert_eq(sorted(per_node), ['n0', 'r0'])
    assert_eq(sorted(per_node['n0']), ['node-name', 'stats'])
    # As QEMU: a node's entry describes its file child as "parent".
    assert_eq(sorted(per_node['r0']), ['node-name', 'parent', 'stats'])
    assert_eq(per_node['r0']['parent'], per_node['n0'])
    for s in per_node.values():
        assert_eq(sorted(s['stats']), STATS_KEYS, 'BlockDeviceStats keys')
        # Nodes count nothing themselves (QEMU's values).
        assert_eq(s['stats']['account_invalid'], False)
        assert_eq(s['stats']['account_failed'], False)
        assert_eq(s['stats']['timed_stats'], [])
        assert_eq(s['stats']['rd_operations'], 0)
    assert_qmp_error(lambda: qmp.cmd('query-blockstats', query_nodes='on'),
                     "'query-nodes': expected boolean")
    d.stop()


# --- With an export ----------------------------------------------------------

@test
def test_export_is_a_user(env):
    """An export's BlockBackend is a user: blockdev-del and the iothread
    guard name it, and query-blockstats reports its I/O."""
    try:
        import nbd
    except ImportError:
        raise SkipTest('python3-libnbd is not installed')
    image = env.make_image(size=4 * MiB)
    d = env.start(['--object', 'iothread,id=io0',
                   '--blockdev', f'driver=file,node-name=f0,filename={image}',
                   '--blockdev', 'driver=raw,node-name=r0,file=f0'])
    qmp = env.qmp()
    names = {c['name'] for c in qmp.cmd('query-commands')}
    if 'block-export-add' not in names:
        d.stop()
        raise SkipTest('this blockd has no block-export-add yet')
    sock = env.path('nbd.sock')
    qmp.cmd('nbd-server-start',
            addr={'type': 'unix', 'data': {'path': sock}})
    qmp.cmd('block-export-add', type='nbd', id='exp0', node_name='r0',
            name='disk', writable=True)

    e = assert_qmp_error(lambda: qmp.cmd('blockdev-del', node_name='r0'))
    assert_in("Node 'r0' is busy: used by ", e.desc)
    assert_in('exp0', e.desc)
    e = assert_qmp_error(lambda: qmp.cmd('x-blockdev-set-iothread',
                                         node_name='r0', iothread='io0'))
    assert_in("Node 'r0' is associated with a BlockBackend (", e.desc)
    assert_in('(use force=true to override this check)', e.desc)

    h = nbd.NBD()
    h.connect_uri(f'nbd+unix:///disk?socket={sock}')
    h.pwrite(b'\x5a' * 65536, 0)
    assert_eq(h.pread(65536, 0), b'\x5a' * 65536)
    h.flush()
    h.shutdown()

    [entry] = qmp.cmd('query-blockstats')
    assert_eq((entry['device'], entry['node-name']), ('', 'r0'))
    assert_eq(entry['parent']['node-name'], 'f0')
    stats = entry['stats']
    assert_eq(sorted(k for k in stats if k != 'idle_time_ns'), STATS_KEYS)
    assert stats['rd_operations'] >= 1 and stats['rd_bytes'] >= 65536, stats
    assert stats['wr_operations'] >= 1 and stats['wr_bytes'] >= 65536, stats
    assert stats['flush_operations'] >= 1, stats
    assert stats['idle_time_ns'] >= 0, stats
    assert_eq((stats['account_invalid'], stats['account_failed']),
              (True, True))

    qmp.cmd('block-export-del', id='exp0')
    qmp.event('BLOCK_EXPORT_DELETED')
    assert_eq(qmp.cmd('query-blockstats'), [])
    assert_eq(qmp.cmd('blockdev-del', node_name='r0'), {})
    d.stop()


# --- Against qemu-storage-daemon ---------------------------------------------

def strip_paths(info):
    """BlockDeviceInfo without what differs between two daemons' images."""
    info = dict(info, file=None)
    info['image'] = dict(info['image'], filename=None)
    info['image'].pop('actual-size', None)
    return info


def key_tree(obj):
    """The keys of nested objects, as a comparable structure."""
    if isinstance(obj, dict):
        return {k: key_tree(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [key_tree(v) for v in obj]
    return None


@test
def test_same_answers_as_qsd(env):
    """The same commands give QSD's return values and, where blockd keeps
    QEMU's messages, QSD's errors."""
    qsd = qsd_binary()
    answers = {}
    for name, binary in (('blockd', None), ('qsd', qsd)):
        image = env.make_image(f'{name}.raw', size=4 * MiB)
        d = env.start(['--object', 'iothread,id=io0',
                       '--blockdev',
                       f'driver=file,node-name=f0,filename={image}',
                       '--blockdev', 'driver=raw,node-name=r0,file=f0'],
                      sock=f'{name}.sock', binary=binary)
        qmp = env.qmp(f'{name}.sock')
        a = answers[name] = {}
        a['nodes'] = {n['node-name']: strip_paths(n)
                      for n in qmp.cmd('query-named-block-nodes')}
        a['stats'] = qmp.cmd('query-blockstats')
        a['node stats'] = {s['node-name']: s for s in
                           qmp.cmd('query-blockstats', query_nodes=True)}
        for s in a['node stats'].values():
            s.pop('driver-specific', None)      # QEMU's file driver only
            if 'parent' in s:
                s['parent'].pop('driver-specific', None)
        for i, (cmd, args) in enumerate([
                ('blockdev-del', {'node-name': 'nope'}),
                ('blockdev-add', {'driver': 'file', 'node-name': 'r0',
                                  'filename': image}),
                ('blockdev-add', {'driver': 'file', 'filename': image}),
                ('block_resize', {'node-name': 'nope', 'size': MiB}),
                ('block_resize', {'size': MiB}),
                ('block_resize', {'device': 'drive0', 'size': MiB}),
                ('block_resize', {'node-name': 'r0', 'size': -1}),
                ('x-blockdev-set-iothread', {'node-name': 'nope',
                                             'iothread': 'io0'}),
                ('x-blockdev-set-iothread', {'node-name': 'r0',
                                             'iothread': 'io9'}),
                ('object-del', {'id': 'nope'}),
                ('object-add', {'qom-type': 'iothread', 'id': '0io'}),
                # A child moves with its parent nodes, without force.
                ('x-blockdev-set-iothread', {'node-name': 'f0',
                                             'iothread': 'io0'}),
                ('x-blockdev-set-iothread', {'node-name': 'r0',
                                             'iothread': None}),
                ('block_resize', {'node-name': 'r0', 'size': 2 * MiB}),
                ('blockdev-del', {'node-name': 'r0'}),
                ('blockdev-del', {'node-name': 'f0'})]):
            resp = qmp.cmd_raw(cmd, args)
            a[i, cmd] = resp.get('return', resp.get('error'))
        assert_eq(os.path.getsize(image), 2 * MiB, f'{name}: resized')
        d.quit(qmp)

    blockd, qsd = answers['blockd'], answers['qsd']
    assert_eq(blockd['nodes'], qsd['nodes'], 'query-named-block-nodes')
    assert_eq(blockd['stats'], qsd['stats'], 'query-blockstats')
    assert_eq(key_tree(blockd['node stats']), key_tree(qsd['node stats']),
              'query-blockstats query-nodes: keys')
    assert_eq(blockd['node stats'], qsd['node stats'],
              'query-blockstats query-nodes')
    for key, want in qsd.items():
        if not isinstance(key, tuple):
            continue
        got = blockd[key]
        if isinstance(want, dict) and 'class' in want:
            assert isinstance(got, dict) and 'class' in got, \
                f'{key}: blockd returned {got}, QSD failed with {want}'
            assert_eq(got['class'], want['class'], f'{key}: error class')
            assert got['desc'].startswith(want['desc']), \
                f'{key}: {got["desc"]!r} does not start with {want["desc"]!r}'
        else:
            assert_eq(got, want, f'{key}: return value')


if __name__ == '__main__':
    main()
