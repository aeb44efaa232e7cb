# SPDX-License-Identifier: GPL-2.0-or-later
"""Server processes: start, readiness, CPU and memory accounting, QMP, and
the command line of every server the benchmark compares."""

import ctypes
import json
import os
import shlex
import signal
import socket
import subprocess
import time

CLK_TCK = os.sysconf('SC_CLK_TCK')

# How long a server may take to become ready, and to exit on SIGTERM.
READY_TIMEOUT = 30
STOP_TIMEOUT = 10


class StartFailed(Exception):
    """A server exited, or never became ready, before serving."""


class RunFailed(Exception):
    """A measurement failed: fio failed, or the server died."""


class ServerDied(RunFailed):
    """The server died under the measurement (.death says how)."""

    def __init__(self, death, error=None):
        super().__init__(f'died: {death}' + (f' ({error})' if error else ''))
        self.death = death


# --- Processes ----------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1


def _die_with_parent():
    """preexec_fn: SIGKILL the child if this script dies, even by SIGKILL."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _read_proc(pid, name):
    with open(f'/proc/{pid}/{name}') as f:
        return f.read()


def _stat_fields(pid):
    """/proc/PID/stat after the command name (which may hold spaces):
    index 0 is field 3 (state)."""
    text = _read_proc(pid, 'stat')
    return text[text.rindex(')') + 2:].split()


def cpu_seconds(pid):
    """utime + stime of @pid, every thread (exited ones included), in
    seconds.  None of the servers forks (nbdkit runs with --foreground)."""
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_kib(pid):
    """VmRSS of @pid, KiB."""
    for line in _read_proc(pid, 'status').splitlines():
        if line.startswith('VmRSS:'):
            return int(line.split()[1])
    raise RuntimeError(f'no VmRSS for {pid}')


def describe_exit(rc, stderr_text):
    """A one-line account of how a process ended, with the last line of
    its stderr (an assertion, usually)."""
    if rc < 0:
        try:
            how = f'killed by {signal.Signals(-rc).name}'
        except ValueError:
            how = f'killed by signal {-rc}'
    else:
        how = f'exited with status {rc}'
    lines = [l.strip() for l in stderr_text.splitlines() if l.strip()]
    return f'{how}: {lines[-1]}' if lines else how


def socket_accepts(path):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(path)
            return True
        except (FileNotFoundError, ConnectionRefusedError):
            return False


# --- QMP ----------------------------------------------------------------------

class QMPError(Exception):
    pass


class QMP:
    """A QMP connection: connected and greeted by the constructor (which
    raises OSError if the socket is not there yet), negotiated by
    negotiate().  Its own lean reader (one scan of each byte, no
    re-copying of the buffer): a reply with 1000 nodes is several MiB, and
    the client's cost must not show in the latencies measured."""

    def __init__(self, path, timeout=READY_TIMEOUT):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.buf = bytearray()
        self.scanned = 0
        self.next_id = 0
        self.last_reply_bytes = 0
        try:
            self.sock.settimeout(timeout)
            self.sock.connect(path)
            self.greeting = self._recv()
        except BaseException:
            self.sock.close()
            raise

    def negotiate(self):
        self.cmd('qmp_capabilities')

    def _recv(self):
        while True:
            end = self.buf.find(b'\n', self.scanned)
            if end >= 0:
                line = bytes(self.buf[:end])
                del self.buf[:end + 1]
                self.scanned = 0
                self.last_reply_bytes = len(line)
                return json.loads(line)
            self.scanned = len(self.buf)
            data = self.sock.recv(1 << 20)
            if not data:
                raise ConnectionError('QMP connection closed')
            self.buf += data

    def execute(self, name, args=None):
        """The whole response: {"return": ...} or {"error": ...}."""
        self.next_id += 1
        msg = {'execute': name, 'id': self.next_id}
        if args:
            msg['arguments'] = args
        self.sock.sendall(json.dumps(msg).encode() + b'\n')
        while True:
            resp = self._recv()
            if resp.get('id') == self.next_id:
                return resp

    def cmd(self, name, args=None):
        resp = self.execute(name, args)
        if 'error' in resp:
            raise QMPError(f'{name}: {resp["error"].get("desc")}')
        return resp['return']

    def close(self):
        self.sock.close()


# --- Servers ------------------------------------------------------------------

class Instance:
    """One running server process, ready to serve."""

    def __init__(self, bench, server, argv, nbd_sock, qmp_sock, label):
        self.bench = bench
        self.server = server
        self.argv = argv
        self.nbd_sock = nbd_sock
        self.qmp_sock = qmp_sock
        self.label = label
        self.log = bench.temp_path(f'{server.name}.log')
        self.ready_seconds = None
        self.proc = None
        self.qmp = None

    @property
    def uri(self):
        return f'nbd+unix:///disk?socket={self.nbd_sock}'

    @property
    def pid(self):
        return self.proc.pid

    def stderr_text(self):
        try:
            with open(self.log, errors='replace') as f:
                return f.read()
        except OSError:
            return ''

    def start(self):
        """Start the process and wait until it is ready: its QMP socket
        gives a greeting (daemons list the monitor last, so everything
        before it is up), or its NBD socket accepts (qemu-nbd, nbdkit).
        The QMP connection that saw the greeting stays open, negotiated,
        as self.qmp: QSD's monitor serves one client at a time, and a
        second connection right after a first one closed can race with
        its teardown."""
        with open(self.log, 'wb') as log:
            t0 = time.monotonic()
            self.proc = self.bench.spawn(self.argv, stdout=log, stderr=log)
        ready = self.qmp_sock or self.nbd_sock
        deadline = t0 + READY_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                self.bench.reap(self.proc)
                raise StartFailed(describe_exit(self.proc.returncode,
                                                self.stderr_text()))
            if self.qmp_sock and self._greets():
                ready_at = time.monotonic()
                break
            if not self.qmp_sock and socket_accepts(ready):
                ready_at = time.monotonic()
                break
            if time.monotonic() > deadline:
                self.stop()
                raise StartFailed(f'{ready} not ready after '
                                  f'{READY_TIMEOUT} s')
            time.sleep(0.001)
        self.ready_seconds = ready_at - t0
        if self.qmp:
            try:
                self.qmp.negotiate()
            except (OSError, ValueError, QMPError) as e:
                self.stop()
                raise StartFailed(f'QMP negotiation: {e}') from None
        return self

    def _greets(self):
        try:
            self.qmp = QMP(self.qmp_sock)
            return True
        except (OSError, ValueError):
            # Not listening yet (or went away: the caller sees the exit).
            return False

    def died(self):
        """None while running, else how it ended."""
        if self.proc.poll() is None:
            return None
        return describe_exit(self.proc.returncode, self.stderr_text())

    def stop(self):
        """Stop the server; None if it was running and exited cleanly on
        SIGTERM, else how it died (on its own, or badly on SIGTERM)."""
        if self.qmp:
            self.qmp.close()
            self.qmp = None
        death = self.died()
        if death is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.bench.kill(self.proc)
                death = f'did not exit within {STOP_TIMEOUT} s of SIGTERM'
            else:
                if self.proc.returncode not in (0, -signal.SIGTERM):
                    death = ('on SIGTERM: ' + describe_exit(
                        self.proc.returncode, self.stderr_text()))
        self.bench.reap(self.proc)
        for path in (self.nbd_sock, self.qmp_sock, self.log):
            if path and os.path.lexists(path):
                os.unlink(path)
        return death


class Server:
    """A kind of server and how to start it for a backend."""
    name = ''
    product = ''             # the program, for rows without an export
    role = 'peer'            # 'blockd', 'peer' or 'ceiling'
    tool = None              # the binary it needs (scripts/bench PACKAGES)
    has_qmp = False

    def __init__(self, bench):
        self.bench = bench
        # Set once the server cannot start: its rows say this instead of
        # numbers.
        self.unavailable = None
        self.notes = []

    def serves(self, cell):
        """Whether this server has a row in @cell."""
        return True

    def label(self, backend):
        raise NotImplementedError

    def argv(self, backend, nbd_sock, qmp_sock, nbd=True):
        raise NotImplementedError

    def describe(self, backend):
        """The command line, with the run's paths as placeholders."""
        argv = self.argv(backend, '$SOCK/nbd.sock', '$SOCK/qmp.sock')
        text = shlex.join(argv)
        text = text.replace(self.bench.image, '$IMAGE')
        return text.replace(str(self.bench.size), '$SIZE')

    def start(self, backend, nbd=True):
        nbd_sock = self.bench.temp_path(f'{self.name}-nbd.sock') if nbd else None
        qmp_sock = (self.bench.temp_path(f'{self.name}-qmp.sock')
                    if self.has_qmp else None)
        inst = Instance(self.bench, self,
                        self.argv(backend, nbd_sock, qmp_sock, nbd=nbd),
                        nbd_sock, qmp_sock,
                        self.label(backend) if nbd else self.product)
        return inst.start()

    def crashed(self, death):
        """The server died under a client.  True if it now runs another
        way and the measurement should be repeated (QSD's fallback)."""
        return False


class QemuStyleDaemon(Server):
    """blockd and qemu-storage-daemon share QSD's command line."""
    has_qmp = True

    def iothreads(self):
        """(iothreads created, iothreads the export runs in)."""
        raise NotImplementedError

    def argv(self, backend, nbd_sock, qmp_sock, nbd=True):
        created, export_in = self.iothreads()
        if not nbd:
            # No export: every daemon gets the same one iothread.
            created, export_in = ['io0'], []
        argv = [self.binary()]
        for io in created:
            argv += ['--object', f'iothread,id={io}']
        if backend == 'file':
            argv += ['--blockdev',
                     f'driver=file,node-name=file0,filename={self.bench.image},'
                     'aio=io_uring,cache.direct=on',
                     '--blockdev', 'driver=raw,node-name=disk0,file=file0']
        elif backend == 'null':
            argv += ['--blockdev', f'driver=null-co,node-name=disk0,'
                     f'size={self.bench.size},read-zeroes=on']
        if nbd and backend:
            export = 'type=nbd,id=exp0,node-name=disk0,name=disk,writable=on'
            if len(export_in) == 1:
                export += f',iothread={export_in[0]}'
            else:
                export += ''.join(f',iothread.{i}={io}'
                                  for i, io in enumerate(export_in))
            argv += ['--nbd-server', f'addr.type=unix,addr.path={nbd_sock}',
                     '--export', export]
        argv += ['--chardev', f'socket,id=qmp0,path={qmp_sock},'
                 'server=on,wait=off', '--monitor', 'chardev=qmp0']
        return argv


class Blockd(QemuStyleDaemon):
    role = 'blockd'
    name = 'blockd'
    product = 'blockd'

    def binary(self):
        return self.bench.blockd

    def iothreads(self):
        return ['io0'], ['io0']

    def label(self, backend):
        return 'blockd (iothread)'


class BlockdMultiqueue(Blockd):
    name = 'blockd-mq'

    def iothreads(self):
        return ['io0', 'io1'], ['io0', 'io1']

    def serves(self, cell):
        # One connection lands in one iothread: the same as plain blockd.
        return cell.conns > 1

    def label(self, backend):
        return 'blockd (multiqueue, 2 iothreads)'


class QSD(QemuStyleDaemon):
    """qemu-storage-daemon with the export in an iothread, as blockd; QSD
    7.2 aborts when a client leaves an iothread export, so after the first
    such crash it runs the export in its main loop."""
    name = 'qsd'
    product = 'qemu-storage-daemon'
    tool = 'qemu-storage-daemon'

    def __init__(self, bench):
        super().__init__(bench)
        self.iothread_crash = None

    def binary(self):
        return 'qemu-storage-daemon'

    def iothreads(self):
        if self.iothread_crash:
            return [], []
        return ['io0'], ['io0']

    def label(self, backend):
        if self.iothread_crash:
            return 'qemu-storage-daemon (main loop; iothread export crashed)'
        return 'qemu-storage-daemon (iothread)'

    def crashed(self, death):
        if self.iothread_crash:
            return False
        self.iothread_crash = death
        self.notes.append(
            f'qemu-storage-daemon with its export in an iothread died: '
            f'`{death}`.  Every qemu-storage-daemon row runs the export '
            f'in its main loop instead (no iothread).')
        return True


class QemuNbd(Server):
    name = 'qemu-nbd'
    tool = 'qemu-nbd'

    def label(self, backend):
        if backend == 'null':
            return 'qemu-nbd (null-co via --image-opts)'
        return 'qemu-nbd'

    def argv(self, backend, nbd_sock, qmp_sock, nbd=True):
        argv = ['qemu-nbd', '--aio=io_uring', '--cache=none', '--shared=128',
                '--persistent', '--export-name=disk', f'--socket={nbd_sock}']
        if backend == 'null':
            return argv + ['--image-opts', f'driver=null-co,'
                           f'size={self.bench.size},read-zeroes=on']
        return argv + ['--format=raw', self.bench.image]


class Nbdkit(Server):
    name = 'nbdkit'
    tool = 'nbdkit'

    def label(self, backend):
        if backend == 'null':
            return 'nbdkit (null plugin)'
        return 'nbdkit (file plugin, cache=none)'

    def argv(self, backend, nbd_sock, qmp_sock, nbd=True):
        argv = ['nbdkit', '--foreground', f'--unix={nbd_sock}',
                '--exportname=disk']
        if backend == 'null':
            return argv + ['null', f'size={self.bench.size}']
        return argv + ['file', f'file={self.bench.image}', 'cache=none']


class IoUringCeiling(Server):
    """No server: fio's io_uring engine on the image, O_DIRECT."""
    name = 'io_uring'
    role = 'ceiling'

    def serves(self, cell):
        return cell.backend == 'file'

    def label(self, backend):
        return 'fio io_uring on the image, O_DIRECT (ceiling)'

    def describe(self, backend):
        return 'fio --ioengine=io_uring --direct=1 --filename=$IMAGE'


SERVER_CLASSES = (Blockd, BlockdMultiqueue, QSD, QemuNbd, Nbdkit,
                  IoUringCeiling)
SERVER_NAMES = tuple(c.name for c in SERVER_CLASSES)

