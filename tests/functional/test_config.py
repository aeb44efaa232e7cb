#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""--config FILE: the same daemon as the equivalent command line, and every
kind of bad config file refused with an exact message, exit 1 and nothing
left behind."""

import json
import os

from harness import (SkipTest, assert_eq, assert_fails, main, nbd_available,
                     node_summary, test)


def write_config(env, cfg, name='blockd.json'):
    path = env.path(name)
    with open(path, 'w') as f:
        if isinstance(cfg, str):
            f.write(cfg)
        else:
            json.dump(cfg, f, indent=4)
    return path


@test
def test_config_equals_command_line(env):
    image = env.make_image()
    cmdline = ['--object', 'iothread,id=io0',
               '--blockdev', f'driver=file,node-name=file0,filename={image},'
               'cache.direct=off,aio=threads',
               '--blockdev', 'driver=raw,node-name=disk0,file=file0',
               '--blockdev', 'driver=null-co,node-name=null0,size=16M']
    d = env.start(cmdline)
    qmp = env.qmp()
    want_nodes = qmp.cmd('query-named-block-nodes')
    want_iothreads = [t['id'] for t in qmp.cmd('query-iothreads')]
    d.stop()

    sock = env.path('qmp.sock')
    cfg = write_config(env, {
        # Keys in another order than they are applied: the order is fixed.
        'monitor': [{'path': sock}],
        'blockdev': [
            {'driver': 'file', 'node-name': 'file0', 'filename': image,
             'cache': {'direct': False}, 'aio': 'threads'},
            {'driver': 'raw', 'node-name': 'disk0', 'file': 'file0'},
            {'driver': 'null-co', 'node-name': 'null0', 'size': 16 << 20},
        ],
        'object': [{'qom-type': 'iothread', 'id': 'io0'}],
        'pidfile': env.path('blockd.pid'),
    })
    d = env.daemon(['--config', cfg])
    d.wait_socket(sock)
    qmp = env.qmp()
    assert_eq(qmp.cmd('query-named-block-nodes'), want_nodes)
    assert_eq([t['id'] for t in qmp.cmd('query-iothreads')], want_iothreads)
    d.wait_pidfile(env.path('blockd.pid'))
    d.stop()
    assert_eq(env.files(), ['blockd.json', 'disk.raw'])


@test
def test_config_chardev_monitor(env):
    """Chardevs and monitors in the config, like --chardev/--monitor."""
    sock = env.path('qmp.sock')
    cfg = write_config(env, {
        'chardev': [{'backend': 'socket', 'id': 'qmp0', 'path': sock,
                     'server': True, 'wait': False}],
        'monitor': [{'chardev': 'qmp0', 'mode': 'control'}],
    })
    d = env.daemon(['--config', cfg])
    d.wait_socket(sock)
    env.qmp().cmd('query-version')
    d.stop()


@test
def test_config_and_command_line_in_order(env):
    """--config runs where it stands among the other options."""
    cfg = write_config(env, {'blockdev': [
        {'driver': 'null-co', 'node-name': 'n0'}]})
    d = env.start(['--config', cfg, '--blockdev', 'raw,node-name=r0,file=n0'])
    assert_eq(node_summary(env.qmp().cmd('query-named-block-nodes')),
              {'n0': 'null-co', 'r0': 'raw'})
    d.stop()
    r = env.run(['--blockdev', 'raw,node-name=r0,file=n0', '--config', cfg])
    assert_fails(r, "blockd: --blockdev raw,node-name=r0,file=n0: "
                 "'file': no node named 'n0'")


# (config file text or object, message after "blockd: --config FILE: ").
BAD_CONFIGS = [
    ('', 'invalid JSON at line 1, column 1: unexpected end of data'),
    ('{', 'invalid JSON at line 1, column 2: unexpected end of data'),
    ('{"blockdev": [}', 'invalid JSON at line 1, column 15: '
     'unexpected character'),
    ('{\n  "pidfile": "x",\n  oops\n}', 'invalid JSON at line 3, column 3: '
     'quoted object property name expected'),
    ('{} {}', 'invalid JSON at line 1, column 4: unexpected character'),
    ('{"a": 1,}', 'invalid JSON at line 1, column 9: unexpected character'),
    ('[]', 'expected a JSON object'),
    ('"blockdev"', 'expected a JSON object'),
    ('null', 'expected a JSON object'),
    ('12', 'expected a JSON object'),
    ('{"a": "\0"}', 'invalid JSON: the file contains a NUL byte'),
    ({'blockdevs': []}, "'blockdevs': unexpected parameter"),
    ({'daemonize': True}, "'daemonize': unexpected parameter"),
    ({'blockdev': {}}, "'blockdev': expected list"),
    ({'object': 'iothread'}, "'object': expected list"),
    ({'monitor': None}, "'monitor': expected list"),
    ({'blockdev': [1]}, "'blockdev[0]': expected object"),
    ({'export': [[]]}, "'export[0]': expected object"),
    ({'nbd-server': []}, "'nbd-server': expected object"),
    ({'pidfile': 1}, "'pidfile': expected string"),
    ({'pidfile': ''}, "'pidfile': the path is empty"),
    ({'blockdev': [{'driver': 'null-co', 'node-name': 'n0'},
                   {'driver': 'file', 'node-name': 'f0'}]},
     "blockdev[1]: 'filename': missing required parameter"),
    # JSON types are QMP's: no string conversions
    ({'blockdev': [{'driver': 'null-co', 'node-name': 'n0',
                    'read-only': 'on'}]},
     "blockdev[0]: 'read-only': expected boolean"),
    ({'blockdev': [{'driver': 'null-co', 'node-name': 'n0',
                    'size': '1M'}]},
     "blockdev[0]: 'size': expected size"),
    ({'object': [{'qom-type': 'iothread'}]},
     "object[0]: 'id': missing required parameter"),
    ({'chardev': [{'backend': 'socket', 'id': 'c', 'path': '{d}/s',
                   'server': 'on'}]},
     "chardev[0]: 'server': expected boolean"),
    ({'chardev': [{'backend': 'socket', 'id': 'c', 'host': 'localhost',
                   'port': '4444'}]},
     "chardev[0]: 'host': only UNIX domain sockets are supported "
     "(give 'path')"),
    ({'monitor': [{}]},
     "monitor[0]: 'chardev' or 'path': missing required parameter"),
    ({'monitor': [{'path': '{d}/a.sock', 'chardev': 'c'}]},
     "monitor[0]: 'path': cannot be used together with 'chardev'"),
    ({'monitor': [{'path': 5}]}, "monitor[0]: 'path': expected string"),
    ({'monitor': [{'path': '{d}/a.sock', 'mode': 'readline'}]},
     "monitor[0]: 'mode': only mode=control (QMP) is supported"),
    # Failures after earlier entries created something: the monitor
    # socket and the pid file are gone again.
    ({'monitor': [{'path': '{d}/a.sock'}, {'chardev': 'nope'}],
      'pidfile': '{d}/blockd.pid'},
     "monitor[1]: 'chardev': chardev 'nope' not found"),
    ({'monitor': [{'path': '{d}/a.sock'}, {'path': '{d}/a.sock'}]},
     None),     # message from monitor_add_unix: checked loosely below
]


def render(value, d):
    if isinstance(value, str):
        return value.replace('{d}', d)
    if isinstance(value, list):
        return [render(v, d) for v in value]
    if isinstance(value, dict):
        return {k: render(v, d) for k, v in value.items()}
    return value


@test
def test_bad_configs(env):
    for cfg, message in BAD_CONFIGS:
        path = write_config(env, cfg if isinstance(cfg, str)
                            else render(cfg, env.dir))
        r = env.run(['--config', path])
        os.unlink(path)
        try:
            if message is None:
                assert r.stderr.startswith(f'blockd: --config {path}: '
                                           'monitor[1]: '), r.stderr
                assert_eq(r.stderr.count('\n'), 1, 'lines on stderr')
                assert_eq(r.returncode, 1)
                assert_eq(env.files(), [])
            else:
                assert_fails(r, f'blockd: --config {path}: {message}', env)
        except AssertionError as e:
            raise AssertionError(f'{cfg!r}: {e}') from None


@test
def test_config_files_that_cannot_be_read(env):
    missing = env.path('missing.json')
    r = env.run(['--config', missing])
    assert_fails(r, f'blockd: --config {missing}: could not open the file: '
                 'No such file or directory', env)
    r = env.run(['--config', env.dir])
    assert_fails(r, f'blockd: --config {env.dir}: could not read the file: '
                 'Is a directory', env)
    r = env.run(['--config'])
    assert_fails(r, "blockd: option '--config' requires an argument", env)


@test
def test_config_pidfile_and_command_line(env):
    """The last pid file given wins, from the config or the command line."""
    cfg = write_config(env, {'pidfile': env.path('config.pid')})
    for args, want in [(['--pidfile', 'cli.pid', '--config', cfg],
                        'config.pid'),
                       (['--config', cfg, '--pidfile', 'cli.pid'],
                        'cli.pid')]:
        d = env.start(args)
        assert_eq(sorted(f for f in env.files() if f.endswith('.pid')),
                  [want])
        d.stop()
        assert_eq(sorted(f for f in env.files() if f.endswith('.pid')), [])


@test
def test_nbd_server_addr_forms(env):
    """The flat and legacy addr forms reach nbd-server-start alike: until
    the NBD server exists, both fail as an unknown command (not as a bad
    config)."""
    if nbd_available(env):
        raise SkipTest('the NBD server exists: its own tests cover this')
    sock = env.path('nbd.sock')
    for addr in [{'type': 'unix', 'path': sock},
                 {'type': 'unix', 'data': {'path': sock}}]:
        path = write_config(env, {'nbd-server': {'addr': addr,
                                                 'max-connections': 4}})
        r = env.run(['--config', path])
        assert_fails(r, f'blockd: --config {path}: nbd-server: '
                     'The command nbd-server-start has not been found')
        os.unlink(path)
        assert_eq(env.files(), [])


if __name__ == '__main__':
    main()
