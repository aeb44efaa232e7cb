#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""The daemon's life: SIGTERM/SIGINT/SIGHUP and QMP quit shut it down
cleanly (exit 0, SHUTDOWN event, socket and pid file removed); the pid
file is locked; --daemonize reports start-up success and failure."""

import os
import signal
import time

from harness import (EXIT_TIMEOUT, READY_INTERVAL, READY_TRIES, QMP,
                     assert_eq, assert_in, main, node_summary, test)


def start_with_pidfile(env):
    image = env.make_image()
    d = env.start(['--pidfile', env.path('blockd.pid'),
                   '--object', 'iothread,id=io0',
                   '--blockdev', f'file,node-name=f0,filename={image}',
                   '--blockdev', 'raw,node-name=r0,file=f0',
                   '--blockdev', 'null-co,node-name=n0'])
    d.wait_pidfile(env.path('blockd.pid'))
    return d


def read_pidfile(env, name='blockd.pid'):
    with open(env.path(name)) as f:
        return f.read()


def check_shutdown(env, d, qmp, reason):
    event = qmp.event('SHUTDOWN')
    assert_eq(event['data'], {'guest': False, 'reason': reason})
    assert_eq(sorted(event['timestamp']), ['microseconds', 'seconds'])
    d.wait(0)
    assert_eq(env.files(), ['disk.raw'], 'files left behind')


def shutdown_on_signal(env, sig):
    d = start_with_pidfile(env)
    assert_eq(read_pidfile(env), f'{d.pid}\n', 'pid file')
    qmp = env.qmp()
    other = env.qmp()      # every client gets the event
    d.proc.send_signal(sig)
    check_shutdown(env, d, qmp, 'host-signal')
    assert_eq(other.event('SHUTDOWN')['data']['reason'], 'host-signal')
    assert_in(f'terminating on signal {int(sig)}', d.stderr)


@test
def test_sigterm(env):
    shutdown_on_signal(env, signal.SIGTERM)


@test
def test_sigint(env):
    shutdown_on_signal(env, signal.SIGINT)


@test
def test_sighup(env):
    shutdown_on_signal(env, signal.SIGHUP)


@test
def test_quit(env):
    d = start_with_pidfile(env)
    qmp = env.qmp()
    other = env.qmp()
    resp = qmp.cmd_raw('quit', None)
    assert_eq(resp.get('return'), {}, 'quit reply')
    check_shutdown(env, d, qmp, 'host-qmp-quit')
    assert_eq(other.event('SHUTDOWN')['data']['reason'], 'host-qmp-quit')
    assert_eq(d.stderr, '', 'stderr')


@test
def test_shutdown_with_nodes_in_an_iothread(env):
    """Nodes that live in an iothread are closed before it is stopped."""
    d = start_with_pidfile(env)
    qmp = env.qmp()
    qmp.cmd('x-blockdev-set-iothread', node_name='r0', iothread='io0')
    qmp.cmd('x-blockdev-set-iothread', node_name='n0', iothread='io0')
    d.proc.send_signal(signal.SIGTERM)
    check_shutdown(env, d, qmp, 'host-signal')


@test
def test_shutdown_with_unnegotiated_client(env):
    """A client still in negotiation gets no event and does not hold up
    the shutdown."""
    d = start_with_pidfile(env)
    lurker = QMP(env.path('qmp.sock'), negotiate=False)
    env.clients.append(lurker)
    qmp = env.qmp()
    qmp.cmd('quit')
    check_shutdown(env, d, qmp, 'host-qmp-quit')


@test
def test_pidfile_locked(env):
    d = start_with_pidfile(env)
    pidfile = env.path('blockd.pid')
    # The same pid file, another monitor socket and no image: refused
    # before anything starts.
    second = env.daemon(['--pidfile', pidfile] +
                        env.monitor_args('second.sock'))
    second.wait(1)
    assert_eq(second.stderr, f'blockd: --pidfile {pidfile}: the pid file is '
              f'locked by another blockd (pid {d.pid})\n')
    assert not os.path.exists(env.path('second.sock'))
    # The first daemon and its pid file are untouched.
    assert_eq(read_pidfile(env), f'{d.pid}\n')
    env.qmp().cmd('query-version')
    d.stop()
    assert not os.path.exists(pidfile)


@test
def test_stale_pidfile_taken_over(env):
    """A pid file left by a daemon that died is not locked: reused."""
    with open(env.path('blockd.pid'), 'w') as f:
        f.write('999999\n')
    d = start_with_pidfile(env)
    assert_eq(read_pidfile(env), f'{d.pid}\n')
    d.stop()
    assert not os.path.exists(env.path('blockd.pid'))


def wait_gone(pid):
    """Poll until process @pid (not our child) has exited."""
    for _ in range(READY_TRIES):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(READY_INTERVAL)
    raise AssertionError(f'process {pid} still running')


@test
def test_daemonize(env):
    image = env.make_image()
    pidfile = env.path('blockd.pid')
    r = env.run(['--daemonize', '--pidfile', pidfile,
                 '--blockdev', f'file,node-name=f0,filename={image}'] +
                env.monitor_args(), timeout=EXIT_TIMEOUT)
    assert_eq((r.returncode, r.stdout, r.stderr), (0, '', ''))
    # Ready when the parent returns: pid file written, monitor listening.
    pid = int(read_pidfile(env))
    assert pid != os.getpid()
    try:
        qmp = env.qmp()
        assert_eq(node_summary(qmp.cmd('query-named-block-nodes')),
                  {'f0': 'file'})
        with open(f'/proc/{pid}/stat') as f:
            fields = f.read().rsplit(')', 1)[1].split()
        ppid, sid = int(fields[1]), int(fields[3])
        assert ppid != os.getpid(), 'the daemon is our child'
        assert sid != os.getsid(0), 'the daemon is in our session'
        assert sid != pid, 'the daemon is a session leader'
        qmp.cmd('quit')
        assert_eq(qmp.event('SHUTDOWN')['data']['reason'], 'host-qmp-quit')
    except BaseException:
        os.kill(pid, signal.SIGKILL)
        raise
    wait_gone(pid)
    assert_eq(env.files(), ['disk.raw'], 'files left behind')


@test
def test_daemonize_failure(env):
    """The parent exits 1 with the daemon's error; nothing is left."""
    pidfile = env.path('blockd.pid')
    r = env.run(['--daemonize', '--pidfile', pidfile] + env.monitor_args() +
                ['--blockdev', 'null-co,node-name=n0',
                 '--blockdev', 'driver=file,node-name=f0'])
    assert_eq(r.stderr, 'blockd: --blockdev driver=file,node-name=f0: '
              "'filename': missing required parameter\n")
    assert_eq(r.returncode, 1)
    assert_eq(r.stdout, '')
    assert_eq(env.files(), [], 'files left behind')


@test
def test_daemonize_pidfile_locked(env):
    d = start_with_pidfile(env)
    pidfile = env.path('blockd.pid')
    r = env.run(['--daemonize', '--pidfile', pidfile] +
                env.monitor_args('second.sock'))
    assert_eq(r.stderr, f'blockd: --pidfile {pidfile}: the pid file is '
              f'locked by another blockd (pid {d.pid})\n')
    assert_eq(r.returncode, 1)
    assert_eq(read_pidfile(env), f'{d.pid}\n')
    d.stop()


@test
def test_daemonize_bad_option_refused_before_fork(env):
    r = env.run(['--daemonize', '--bogus'])
    assert_eq((r.returncode, r.stderr),
              (1, "blockd: unrecognized option '--bogus'\n"))


if __name__ == '__main__':
    main()
