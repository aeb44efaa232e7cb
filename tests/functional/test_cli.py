#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""blockd's command line: help, version, every kind of bad option (exact
message, exit 1, nothing left behind), keyval and JSON forms, order."""

import json
import os
import subprocess

from harness import (EXIT_TIMEOUT, SkipTest, assert_eq, assert_fails,
                     assert_in, blockd_binary, blockd_version, main,
                     nbd_available, node_summary, test)

OPTIONS = ['--blockdev', '--chardev', '--config', '--daemonize', '--export',
           '--help', '--monitor', '--nbd-server', '--object', '--pidfile',
           '--version']


@test
def test_help(env):
    for opt in ['-h', '--help', '--he']:
        r = env.run([opt])
        assert_eq(r.returncode, 0, f'{opt}: exit status')
        assert_eq(r.stderr, '', f'{opt}: stderr')
        assert r.stdout.startswith('Usage: blockd [options]\n'), r.stdout
        for o in OPTIONS:
            assert_in(o, r.stdout, f'{opt}: help text')


@test
def test_help_wins_wherever_it_is(env):
    r = env.run(['--blockdev', 'null-co,node-name=n0', '-h',
                 '--blockdev', 'nonsense'])
    assert_eq(r.returncode, 0)
    assert r.stdout.startswith('Usage: blockd'), r.stdout
    assert_eq(env.files(), [])


@test
def test_version(env):
    for opt in ['-V', '--version']:
        r = env.run([opt])
        assert_eq(r.returncode, 0, f'{opt}: exit status')
        assert_eq(r.stderr, '', f'{opt}: stderr')
        lines = r.stdout.splitlines()
        assert_eq(lines[0], f'blockd {blockd_version()}')
        assert_in('qemu-storage-daemon 9.2.0', lines[1])


# (arguments, message after "blockd: "); {d} is the test directory.
BAD_OPTIONS = [
    (['--foo'], "unrecognized option '--foo'"),
    (['--foo=bar'], "unrecognized option '--foo'"),
    (['--c', 'x'], "option '--c' is ambiguous"),
    (['-x'], "invalid option '-x'"),
    (['--blockdev'], "option '--blockdev' requires an argument"),
    (['--help=yes'], "option '--help' doesn't allow an argument"),
    (['--daemonize=yes'], "option '--daemonize' doesn't allow an argument"),
    (['stray'], "unexpected argument 'stray'"),
    (['--blockdev', 'null-co,node-name=n0', 'stray'],
     "unexpected argument 'stray'"),
    # keyval syntax
    (['--blockdev', 'driver=null-co,node name=x'],
     "--blockdev driver=null-co,node name=x: Invalid parameter 'node name'"),
    (['--blockdev', 'driver=null-co,node-name'],
     "--blockdev driver=null-co,node-name: "
     "Expected '=' after parameter 'node-name'"),
    (['--blockdev', 'driver=null-co,a=1,a.b=2'],
     "--blockdev driver=null-co,a=1,a.b=2: "
     "Parameter 'a' used inconsistently"),
    # JSON syntax
    (['--blockdev', '{"driver": "null-co"'],
     '--blockdev {"driver": "null-co": invalid JSON at line 1, column 21: '
     'unexpected end of data'),
    (['--blockdev', '{"driver": "null-co",}'],
     '--blockdev {"driver": "null-co",}: invalid JSON at line 1, column 22: '
     'unexpected character'),
    (['--blockdev', '{"driver": "null-co"} x'],
     '--blockdev {"driver": "null-co"} x: invalid JSON at line 1, '
     'column 23: unexpected character'),
    (['--object', '{"qom-type": nope}'],
     '--object {"qom-type": nope}: invalid JSON at line 1, column 15: '
     'null expected'),

    # blockdev-add's own checks, as over QMP
    (['--blockdev', 'driver=file,node-name=f0'],
     "--blockdev driver=file,node-name=f0: "
     "'filename': missing required parameter"),
    (['--blockdev', 'driver=null-co,node-name=n0,size=lots'],
     "--blockdev driver=null-co,node-name=n0,size=lots: "
     "'size': expected size"),
    (['--blockdev', 'driver=null-co,node-name=n0,read-only=maybe'],
     "--blockdev driver=null-co,node-name=n0,read-only=maybe: "
     "'read-only': expected boolean"),
    (['--blockdev', 'driver=null-co,node-name=n0,bogus=1'],
     "--blockdev driver=null-co,node-name=n0,bogus=1: "
     "'bogus': unexpected parameter"),
    (['--blockdev', '{"driver": "null-co", "node-name": "n0", '
      '"read-only": "on"}'],
     '--blockdev {"driver": "null-co", "node-name": "n0", '
     '"read-only": "on"}: \'read-only\': expected boolean'),
    (['--blockdev', 'driver=file,node-name=f0,filename={d}/missing.raw'],
     "--blockdev driver=file,node-name=f0,filename={d}/missing.raw: "
     "Could not open '{d}/missing.raw': No such file or directory"),
    (['--blockdev', 'null-co,node-name=n0', '--blockdev',
      'null-co,node-name=n0'],
     "--blockdev null-co,node-name=n0: Duplicate nodes with node-name='n0'"),
    # object-add
    (['--object', 'iothread'],
     "--object iothread: 'id': missing required parameter"),
    (['--object', 'iothread,id=io0,poll-max-ns=fast'],
     "--object iothread,id=io0,poll-max-ns=fast: "
     "'poll-max-ns': expected integer"),
    # chardev
    (['--chardev', 'socket,id=c0,host=localhost,port=4444'],
     "--chardev socket,id=c0,host=localhost,port=4444: "
     "'host': only UNIX domain sockets are supported (give 'path')"),
    (['--chardev', 'socket,id=c0,path={d}/s'],
     "--chardev socket,id=c0,path={d}/s: "
     "'server': only listening sockets are supported (server=on)"),
    (['--chardev', 'socket,id=c0,path={d}/s,server=on,wait=on'],
     "--chardev socket,id=c0,path={d}/s,server=on,wait=on: "
     "'wait': waiting for a client at start-up is not supported (wait=off)"),
    (['--chardev', 'socket,id=c0,server=on,wait=off'],
     "--chardev socket,id=c0,server=on,wait=off: "
     "'path': missing required parameter"),
    (['--chardev', 'socket,id=c0,path={d}/s,server=on,telnet=on'],
     "--chardev socket,id=c0,path={d}/s,server=on,telnet=on: "
     "'telnet': unexpected parameter"),
    (['--chardev', 'socket,id=c0,path={d}/s,server=sure'],
     "--chardev socket,id=c0,path={d}/s,server=sure: "
     "'server': expected boolean"),
    (['--chardev', 'pty,id=c0'],
     "--chardev pty,id=c0: 'backend': chardev backend 'pty' is not "
     "supported (only 'socket' and 'stdio')"),
    (['--chardev', 'id=c0'],
     "--chardev id=c0: 'backend': missing required parameter"),
    (['--chardev', 'stdio'],
     "--chardev stdio: 'id': missing required parameter"),
    (['--chardev', 'stdio,id=0c'],
     "--chardev stdio,id=0c: 'id': '0c' is not a valid identifier "
     "(a letter, then letters, digits, '-', '.' or '_')"),
    (['--chardev', 'stdio,id=c0', '--daemonize'],
     '--chardev stdio,id=c0: stdio is not available with --daemonize'),
    (['--chardev', 'stdio,id=c0', '--chardev', 'stdio,id=c1'],
     '--chardev stdio,id=c1: stdio is already used by chardev \'c0\''),
    (['--chardev', 'stdio,id=c0', '--chardev',
      'socket,id=c0,path={d}/s,server=on'],
     "--chardev socket,id=c0,path={d}/s,server=on: "
     "'id': a chardev named 'c0' already exists"),
    # monitor
    (['--monitor', 'm0'],
     "--monitor m0: 'chardev': chardev 'm0' not found"),
    (['--monitor', 'mode=control'],
     "--monitor mode=control: 'chardev': missing required parameter"),
    (['--monitor', 'chardev=c0,mode=readline'],
     "--monitor chardev=c0,mode=readline: "
     "'mode': only mode=control (QMP) is supported"),
    (['--monitor', 'chardev=c0,mode=shell'],
     "--monitor chardev=c0,mode=shell: "
     "'mode': expected one of 'control', 'readline'"),
    (['--monitor', 'chardev=c0,pretty=on'],
     "--monitor chardev=c0,pretty=on: "
     "'pretty': pretty-printed output is not supported"),
    (['--monitor', 'chardev=c0,path=/x'],
     "--monitor chardev=c0,path=/x: 'path': unexpected parameter"),
    # pidfile
    (['--pidfile', ''], '--pidfile: the path is empty'),
    (['--pidfile', '{d}/no/such/dir/pid'],
     '--pidfile {d}/no/such/dir/pid: could not open the pid file: '
     'No such file or directory'),
]


@test
def test_bad_options(env):
    for args, message in BAD_OPTIONS:
        args = [a.replace('{d}', env.dir) for a in args]
        message = message.replace('{d}', env.dir)
        r = env.run(args)
        try:
            assert_fails(r, 'blockd: ' + message, env)
        except AssertionError as e:
            raise AssertionError(f'{args}: {e}') from None


@test
def test_nbd_options_run_their_qmp_commands(env):
    """--nbd-server and --export go to nbd-server-start and
    block-export-add: until those exist, they fail as unknown commands."""
    if nbd_available(env):
        raise SkipTest('the NBD server exists: its own tests cover this')
    sock = env.path('nbd.sock')
    r = env.run(['--nbd-server', f'addr.type=unix,addr.path={sock}'])
    assert_fails(r, f'blockd: --nbd-server addr.type=unix,addr.path={sock}: '
                 'The command nbd-server-start has not been found')
    r = env.run(['--blockdev', 'null-co,node-name=n0',
                 '--export', 'nbd,id=e0,node-name=n0'])
    assert_fails(r, 'blockd: --export nbd,id=e0,node-name=n0: '
                 'The command block-export-add has not been found', env)


@test
def test_failure_tears_down_earlier_options(env):
    """A late failure removes the sockets, pid file and nodes that
    earlier options created."""
    image = env.make_image()
    pidfile = env.path('blockd.pid')
    args = env.monitor_args() + [
        '--pidfile', pidfile,
        '--object', 'iothread,id=io0',
        '--blockdev', f'file,node-name=f0,filename={image}',
        '--blockdev', 'raw,node-name=r0,file=f0',
        '--blockdev', 'null-co,node-name=n0',
        '--blockdev', 'raw,node-name=r1,file=nope']
    r = env.run(args)
    assert_eq(r.stderr, "blockd: --blockdev raw,node-name=r1,file=nope: "
              "'file': no node named 'nope'\n")
    assert_eq(r.returncode, 1)
    assert_eq(env.files(), ['disk.raw'], 'files left behind')
    # The image is not left locked: a new daemon can open it for writing.
    d = env.start(['--blockdev', f'file,node-name=f0,filename={image}'])
    d.stop()


@test
def test_blockdev_keyval_and_json(env):
    """Both forms define the same nodes."""
    image = env.make_image()
    keyval = ['--blockdev', f'driver=file,node-name=f0,filename={image},'
              'cache.direct=off,read-only=on',
              '--blockdev', 'raw,node-name=r0,file=f0,read-only=on',
              '--blockdev', 'null-co,node-name=n0,size=1M,read-zeroes=on']
    json_form = ['--blockdev', '{"driver": "file", "node-name": "f0", '
                 f'"filename": "{image}", "cache": {{"direct": false}}, '
                 '"read-only": true}',
                 '--blockdev', '{"driver": "raw", "node-name": "r0", '
                 '"file": "f0", "read-only": true}',
                 '--blockdev', '{"driver": "null-co", "node-name": "n0", '
                 '"size": 1048576, "read-zeroes": true}']
    results = []
    for args in [keyval, json_form]:
        d = env.start(args)
        results.append(env.qmp().cmd('query-named-block-nodes'))
        d.stop()
    assert_eq(node_summary(results[0]),
              {'f0': 'file', 'r0': 'raw', 'n0': 'null-co'})
    assert_eq(results[0], results[1], 'keyval vs JSON')


@test
def test_equals_form(env):
    """--opt=value works like --opt value."""
    d = env.start(['--blockdev=null-co,node-name=n0',
                   '--object=iothread,id=io0'])
    qmp = env.qmp()
    assert_eq(node_summary(qmp.cmd('query-named-block-nodes')),
              {'n0': 'null-co'})
    assert_eq([t['id'] for t in qmp.cmd('query-iothreads')], ['io0'])
    d.stop()


@test
def test_options_processed_in_order(env):
    image = env.make_image()
    # A node must be defined before it is referred to ...
    r = env.run(['--blockdev', 'raw,node-name=r0,file=f0',
                 '--blockdev', f'file,node-name=f0,filename={image}'])
    assert_fails(r, "blockd: --blockdev raw,node-name=r0,file=f0: "
                 "'file': no node named 'f0'")
    # ... a chardev before its monitor ...
    sock = env.path('qmp.sock')
    r = env.run(['--monitor', 'qmp0', '--chardev',
                 f'socket,id=qmp0,path={sock},server=on,wait=off'])
    assert_fails(r, "blockd: --monitor qmp0: 'chardev': chardev 'qmp0' "
                 "not found")
    assert_eq(env.files(), ['disk.raw'], 'files left behind')
    # ... and the other way round works.
    d = env.start(['--blockdev', f'file,node-name=f0,filename={image}',
                   '--blockdev', 'raw,node-name=r0,file=f0'])
    assert_eq(node_summary(env.qmp().cmd('query-named-block-nodes')),
              {'f0': 'file', 'r0': 'raw'})
    d.stop()


@test
def test_monitor_implied_chardev_and_two_monitors(env):
    """--monitor ID is --monitor chardev=ID; a chardev carries one."""
    s1, s2 = env.path('a.sock'), env.path('b.sock')
    args = ['--chardev', f'socket,id=a,path={s1},server=on,wait=off',
            '--chardev', f'socket,id=b,path={s2},server=on,wait=off',
            '--monitor', 'a', '--monitor', 'chardev=b,mode=control']
    d = env.daemon(args)
    d.wait_socket(s1)
    d.wait_socket(s2)
    assert_eq(env.qmp('a.sock').cmd('query-version')['package'],
              f'blockd {blockd_version()}')
    env.qmp('b.sock').cmd('query-version')
    d.stop()
    assert_eq(sorted(f for f in env.files() if f.endswith('.sock')), [])
    r = env.run(args + ['--monitor', 'a'])
    assert_fails(r, "blockd: --monitor a: 'chardev': chardev 'a' is "
                 "already used by a monitor", env)


@test
def test_monitor_json_form(env):
    sock = env.path('qmp.sock')
    d = env.daemon(['--chardev', f'socket,id=m,path={sock},server=on',
                    '--monitor', '{"chardev": "m", "mode": "control"}'])
    d.wait_socket(sock)
    env.qmp().cmd('query-version')
    d.stop()


@test
def test_stdio_monitor(env):
    """--chardev stdio: QMP on stdin/stdout."""
    requests = ''.join(json.dumps({'execute': c}) + '\n' for c in
                       ['qmp_capabilities', 'query-named-block-nodes',
                        'quit'])
    r = subprocess.run([blockd_binary(), '--blockdev', 'null-co,node-name=n0',
                        '--chardev', 'stdio,id=c0', '--monitor', 'c0'],
                       input=requests, capture_output=True, text=True,
                       timeout=EXIT_TIMEOUT, cwd=env.dir)
    assert_eq((r.returncode, r.stderr), (0, ''))
    replies = [json.loads(line) for line in r.stdout.splitlines()]
    assert_in('QMP', replies[0])
    assert_eq(replies[1], {'return': {}})
    assert_eq(node_summary(replies[2]['return']), {'n0': 'null-co'})
    assert_eq(replies[3], {'return': {}})
    assert_eq(replies[4]['event'], 'SHUTDOWN')
    assert_eq(len(replies), 5)


@test
def test_relative_paths(env):
    """Relative paths are relative to the working directory."""
    env.make_image('rel.raw')
    d = env.daemon(['--blockdev', 'file,node-name=f0,filename=rel.raw',
                    '--chardev', 'socket,id=m,path=rel.sock,server=on',
                    '--monitor', 'm', '--pidfile', 'rel.pid'])
    d.wait_socket(env.path('rel.sock'))
    nodes = env.qmp('rel.sock').cmd('query-named-block-nodes')
    assert_eq(node_summary(nodes), {'f0': 'file'})
    d.stop()
    assert_eq(env.files(), ['rel.raw'])
    assert not os.path.exists(env.path('rel.pid'))


if __name__ == '__main__':
    main()
