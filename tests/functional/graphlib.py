# SPDX-License-Identifier: GPL-2.0-or-later
"""
What the graph tests share (test_graph_races.py, test_graph_stress.py,
scripts/soak-graph): a daemon with two iothreads, file nodes on images in
the test's directory and an NBD server; the node names the daemon reports
(filters included); job bookkeeping by events; and the words a daemon
uses for a node that does not exist.

Every wait here is bounded: a reply or an event by the QMP client's
timeout (harness.EXIT_TIMEOUT), so a hung daemon fails the test instead of
blocking it.
"""

import itertools
import json
import random
import signal
import subprocess

import harness
from harness import EXIT_TIMEOUT, assert_eq, sanitizer_report

MiB = 1024 * 1024

# The words qemu-storage-daemon 7.2 uses for a node name that names no
# node, per command (asked of QSD 7.2 once, with each command below naming
# a node that never existed).  blockd says the same (docs/qmp.md), but for
# blockdev-add.
_MISSING_NODE = {
    'x-blockdev-set-iothread': "Failed to find node with node-name='{0}'",
    'blockdev-del': "Failed to find node with node-name='{0}'",
    'blockdev-backup': "Cannot find device='{0}' nor node-name='{0}'",
    'blockdev-mirror': "Cannot find device='{0}' nor node-name='{0}'",
    'block-export-add': "Cannot find device='' nor node-name='{0}'",
    'blockdev-add': "Cannot find device='{0}' nor node-name='{0}'",
}
# Where blockd's documented words differ from QSD 7.2's for the same case
# (docs/qmp.md, blockdev-add: a child reference that names no node).
_MISSING_NODE_BLOCKD = {
    'blockdev-add': "'file': no node named '{0}'",
}


def missing_node_errors(command, name):
    """The error descriptions a daemon may give when @command names node
    @name and no such node exists (any more): QSD 7.2's, and blockd's
    documented words where they differ."""
    out = {_MISSING_NODE[command].format(name)}
    if command in _MISSING_NODE_BLOCKD:
        out.add(_MISSING_NODE_BLOCKD[command].format(name))
    return out


def write_pattern(path, size, seed):
    """A file of @size bytes of random data from @seed; its bytes."""
    data = random.Random(seed).randbytes(size)
    with open(path, 'wb') as f:
        f.write(data)
    return data


def daemon_args(env, nodes, iothreads=('io0', 'io1')):
    """Options for a daemon with @iothreads, an NBD server on nbd.sock in
    the test dir and a file node per (name, path) of @nodes."""
    args = []
    for io in iothreads:
        args += ['--object', f'iothread,id={io}']
    for name, path in nodes:
        args += ['--blockdev', f'driver=file,node-name={name},'
                               f'filename={path}']
    args += ['--nbd-server',
             f'addr.type=unix,addr.path={env.path("nbd.sock")}']
    return args


def node_names(qmp, drv=None):
    """The node names query-named-block-nodes reports now (of driver @drv
    only, if given), implicit nodes included."""
    return [n['node-name'] for n in qmp.cmd('query-named-block-nodes')
            if drv is None or n['drv'] == drv]


class Jobs:
    """The events of one QMP connection, for waiting on jobs: an event
    that is not the one waited for is kept until asked for."""

    def __init__(self, qmp):
        self.qmp = qmp
        self.pending = []

    def wait(self, name, **match):
        """The next event @name whose data holds @match's items."""
        def matches(ev):
            data = ev.get('data', {})
            return ev['event'] == name and \
                all(data.get(k) == v for k, v in match.items())
        for ev in self.pending:
            if matches(ev):
                self.pending.remove(ev)
                return ev
        while True:
            ev = self.qmp.client.get_event(EXIT_TIMEOUT)
            assert ev is not None, \
                f'no {name} {match} within {EXIT_TIMEOUT} s; pending ' \
                f'{[(e["event"], e.get("data")) for e in self.pending[-8:]]}'
            if matches(ev):
                return ev
            self.pending.append(ev)

    def ready(self, job_id):
        return self.wait('BLOCK_JOB_READY', device=job_id)

    def gone(self, job_id):
        """Wait until @job_id reached status null (auto-dismissed)."""
        return self.wait('JOB_STATUS_CHANGE', id=job_id, status='null')

    def drop(self):
        """Forget the events kept so far."""
        self.pending.clear()


_pipe_ids = itertools.count(1)


def pipeline(qmp, commands):
    """Send every (name, arguments) of @commands in one write, then read
    the replies; the whole response of each, in the order of @commands.
    Events that come meanwhile are kept for get_event().  A reply that is
    not UTF-8 JSON fails (blockctl's client refuses it)."""
    client = qmp.client
    ids = []
    data = b''
    for name, args in commands:
        msg_id = f'pipe-{next(_pipe_ids)}'
        ids.append(msg_id)
        msg = {'execute': name, 'id': msg_id}
        if args is not None:
            msg['arguments'] = args
        data += (json.dumps(msg) + '\n').encode()
    client.send_raw(data)
    replies = {}
    while len(replies) < len(ids):
        msg = client.recv_message(EXIT_TIMEOUT)
        if 'event' in msg:
            client.events.append(msg)
        elif msg.get('id') in ids:
            replies[msg['id']] = msg
        else:
            raise AssertionError(f'a reply to nothing we sent: {msg}')
    return [replies[i] for i in ids]


def check_reply(reply, allowed, what):
    """@reply is a success, or an error whose class is GenericError and
    whose description is one of @allowed (exact strings)."""
    if 'return' in reply:
        return True
    err = reply.get('error')
    assert err is not None, f'{what}: neither return nor error: {reply}'
    assert_eq(err.get('class'), 'GenericError', f'{what}: error class')
    desc = err.get('desc')
    if desc not in allowed:
        raise AssertionError(f'{what}: unexpected error {desc!r}; allowed '
                             f'{sorted(allowed)}')
    return False


def file_image(env, name, size, seed=None):
    """An image file @name of @size bytes in the test dir: random data
    from @seed, or a hole."""
    path = env.path(name)
    if seed is None:
        with open(path, 'wb') as f:
            f.truncate(size)
        return path, bytes(size)
    return path, write_pattern(path, size, seed)


def daemon_fate(daemon, wait=5):
    """What became of @daemon after its connection failed: its exit
    status (waiting up to @wait s for it) and its sanitizer report, for a
    failure message."""
    try:
        daemon.proc.wait(timeout=wait)
    except subprocess.TimeoutExpired:
        return 'the daemon is still running'
    rc = daemon.proc.returncode
    how = f'exit status {rc}' if rc >= 0 else \
        f'killed by {signal.Signals(-rc).name}'
    report = sanitizer_report(daemon.read_stderr())
    tail = (daemon.read_stderr() or '').strip().splitlines()[-3:]
    return f'the daemon died ({how}); ' + \
        (f'sanitizer report:\n{report}' if report else
         f'stderr ends: {tail}')


def failing_daemon(daemon, what):
    """A context: a QMP connection error or timeout inside becomes an
    AssertionError that says @what was going on and what became of
    @daemon."""
    return _Fate(daemon, what)


class _Fate:
    def __init__(self, daemon, what):
        self.daemon = daemon
        self.what = what

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        qmp_errors = (harness.blockctl_module().QMPConnectionError,
                      harness.blockctl_module().QMPTimeoutError)
        if kind is not None and issubclass(kind, qmp_errors):
            raise AssertionError(f'{self.what}: {exc}; '
                                 f'{daemon_fate(self.daemon)}') from exc
        return False
