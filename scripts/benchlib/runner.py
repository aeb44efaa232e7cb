# SPDX-License-Identifier: GPL-2.0-or-later
"""Bench: runs the matrix and the extra measurements.

Invariants:
- One server runs at a time, started afresh for every run, on the same
  image file, with private sockets in a temporary directory.
- Servers run alternately: each repetition of a cell runs every server
  once, in an order rotated per repetition, so drift in the machine's load
  is spread over all of them.
- Every number comes from a run that happened.  A server that cannot run
  gets a row that says why, never a number.
- Every process and file the run creates is removed by cleanup(); servers
  also die with this script (PR_SET_PDEATHSIG).
"""

import fnmatch
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from .report import Report
from .results import (EXTRAS, GRAPH_CHANGE_PAUSE, GRAPH_PHASES, KIB, MIB, Cell, Row, Sample,
                      fmt, fmt_iops, full_matrix, longest_gap_ms, percentile,
                      rotate, smoke_matrix)
from .servers import (SERVER_CLASSES, STOP_TIMEOUT, QMPError, RunFailed,
                      ServerDied, StartFailed, _die_with_parent, cpu_seconds,
                      rss_kib)

# Debian's interpreter: the one python3-libnbd installs into.
SYSTEM_PYTHON = '/usr/bin/python3'
# fio gets this long beyond its runtime before it counts as hung.
FIO_GRACE = 60
# Per-run cost on top of the runtime (server start and stop, fio set-up),
# for the time estimate only; measured on a 2-core machine.
RUN_OVERHEAD = 0.4

# Opens N libnbd connections, one 4k read each, then waits for a line on
# stdin before closing them: the 64-connection RSS measurement.
HELPER_CONNECT = r'''
import sys
import nbd
uri, count = sys.argv[1], int(sys.argv[2])
handles = []
for _ in range(count):
    h = nbd.NBD()
    h.connect_uri(uri)
    h.pread(4096, 0)
    handles.append(h)
print('connected', flush=True)
sys.stdin.readline()
for h in handles:
    h.shutdown()
'''


def log(msg):
    print(msg, file=sys.stderr, flush=True)


class Bench(Report):
    def __init__(self, args):
        self.args = args
        self.smoke = args.smoke
        self.size = args.size
        self.runtime = args.runtime
        self.repeat = args.repeat
        self.procs = set()
        self.tempdir = None
        self.imagedir = None
        self.image = None
        self.blockd = args.blockd
        self.problems = []
        self.rows = {}            # (cell or extra name, server) -> Row
        self.python_nbd = None    # None, or why 64-connection RSS is skipped
        self.servers = [cls(self) for cls in SERVER_CLASSES
                        if not args.only or cls.name in args.only]
        self.cells = [c for c in (smoke_matrix() if self.smoke
                                  else full_matrix())
                      if self.selected(c.name)]
        self.extra_names = [e for e in EXTRAS if self.selected(e)]
        self.runs_done = 0
        self.runs_planned = 0
        self.t_start = time.monotonic()
        self.load_start = os.getloadavg()

    def selected(self, name):
        if not self.args.cells:
            return True
        return any(fnmatch.fnmatchcase(name, pat) for pat in self.args.cells)

    # --- Processes and files ---

    def temp_path(self, name):
        return os.path.join(self.tempdir, name)

    def spawn(self, argv, **kwargs):
        """Start a child in its own session (Ctrl-C reaches only this
        script, which then stops it), killed if this script dies."""
        proc = subprocess.Popen(argv, stdin=kwargs.pop('stdin',
                                                        subprocess.DEVNULL),
                                start_new_session=True,
                                preexec_fn=_die_with_parent, **kwargs)
        self.procs.add(proc)
        return proc

    def reap(self, proc):
        proc.wait()
        self.procs.discard(proc)

    def kill(self, proc):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.reap(proc)

    def cleanup(self):
        """Stop every child and remove every file this run made."""
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for proc in list(self.procs):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + STOP_TIMEOUT
        for proc in list(self.procs):
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            self.kill(proc)
        for path in (self.tempdir, self.imagedir):
            if path:
                shutil.rmtree(path, ignore_errors=True)
        signal.signal(signal.SIGINT, signal.default_int_handler)

    # --- Set-up ---

    def prepare(self):
        self.tempdir = tempfile.mkdtemp(prefix='blockd-bench-')
        self.imagedir = tempfile.mkdtemp(prefix='blockd-bench-',
                                         dir=self.args.dir)
        self.image = os.path.join(self.imagedir, 'disk.raw')
        if 'extra/rss' in self.extra_names:
            self.check_python_nbd()
        if self.cells or set(self.extra_names) - {'extra/qmp-nodes'}:
            log(f'preparing a {self.size // MIB} MiB image in {self.imagedir}')
            make_image(self.image, self.size)

    def check_python_nbd(self):
        try:
            r = subprocess.run([SYSTEM_PYTHON, '-c', 'import nbd'],
                               capture_output=True, timeout=30)
            ok = r.returncode == 0
        except OSError:
            ok = False
        if not ok:
            self.python_nbd = (f'python3-libnbd is not installed for '
                               f'{SYSTEM_PYTHON}')

    def estimate_seconds(self):
        runs = sum(1 for c in self.cells for s in self.servers
                   if s.serves(c))
        seconds = runs * self.repeat * (self.runtime + RUN_OVERHEAD)
        daemons = [s for s in self.servers if s.role != 'ceiling']
        qmp = [s for s in self.servers if s.has_qmp]
        if 'extra/rss' in self.extra_names:
            seconds += len(daemons) * self.repeat * 3
        if 'extra/startup' in self.extra_names:
            seconds += len(qmp) * self.repeat * 1
        if 'extra/qmp-nodes' in self.extra_names:
            seconds += len(qmp) * 5
        if 'extra/graph-change' in self.extra_names:
            seconds += len(qmp) * 2 * (self.graph_runtime() + RUN_OVERHEAD)
        self.runs_planned = runs * self.repeat
        return seconds

    def graph_runtime(self):
        return max(2, self.runtime)

    # --- Running servers ---

    def with_server(self, server, backend, fn, nbd=True):
        """Start @server, run fn(instance), stop it; fn's value and None,
        or fn's value (if any) and how the server died.  If the server dies
        and now runs another way (QSD's fallback), everything is repeated
        once.  StartFailed and RunFailed pass through."""
        for _ in range(2):
            inst = server.start(backend, nbd=nbd)
            value, error = None, None
            try:
                value = fn(inst)
            except RunFailed as e:
                error = e
            finally:
                death = inst.stop()
            if death and server.crashed(death):
                log(f'  {server.name} died ({death}); running it another way')
                continue
            if error and not death:
                raise error
            if error:
                raise ServerDied(death, error)
            return value, death
        raise RunFailed(f'{server.name} died again')

    def mark_failed(self, server, row, error, start):
        """Record why @server has no numbers in @row."""
        text = str(error).replace(self.tempdir, '$SOCK')
        if isinstance(error, ServerDied) and server.role == 'peer':
            # A peer's crash is a finding about the peer, not a failure
            # of the harness.
            row.status = f'crashed: {error.death}'
            server.notes.append(f'{server.name} crashed: `{error.death}`')
            log(f'  {server.name}: {row.status}')
            return
        row.status = f'failed: {text}'
        self.problems.append(f'{server.name}: {text}')
        server.notes.append(f'{server.name} failed: `{text}`')
        log(f'  {server.name}: {row.status}')
        if start:
            server.unavailable = row.status

    def record_death(self, server, row, death):
        """A server that died after serving: noted; a problem if blockd."""
        note = f'{server.name} died after the run: `{death}`'
        if note not in row.notes:
            row.notes.append(note)
        if server.role == 'blockd':
            self.problems.append(note)

    # --- fio ---

    def fio_argv(self, cell, target, runtime, output, extra=()):
        argv = ['fio', '--name=bench', f'--rw={cell.rw}', f'--bs={cell.bs}',
                f'--iodepth={cell.iodepth}', f'--numjobs={cell.conns}',
                '--group_reporting', '--time_based', f'--runtime={runtime}',
                '--unified_rw_reporting=mixed', '--lat_percentiles=1',
                '--randrepeat=0', '--norandommap',
                '--output-format=json', f'--output={output}']
        if cell.rw == 'randrw':
            argv.append('--rwmixread=70')
        return argv + list(target) + list(extra)

    def fio_target(self, server, inst):
        if server.role == 'ceiling':
            return ['--ioengine=io_uring', '--direct=1',
                    f'--filename={self.image}']
        return ['--ioengine=nbd', f'--uri={inst.uri}']

    def start_fio(self, argv):
        log_path = self.temp_path('fio.log')
        with open(log_path, 'wb') as log_file:
            return self.spawn(argv, stdout=log_file, stderr=log_file)

    def finish_fio(self, proc, runtime, output):
        """Wait for fio; its Sample (CPU not filled in)."""
        try:
            proc.wait(runtime + FIO_GRACE)
        except subprocess.TimeoutExpired:
            self.kill(proc)
            raise RunFailed(f'fio still running {FIO_GRACE} s after its '
                            'runtime') from None
        self.reap(proc)
        with open(self.temp_path('fio.log'), errors='replace') as f:
            fio_log = f.read()
        if proc.returncode != 0:
            lines = [l for l in fio_log.splitlines() if l.strip()]
            raise RunFailed(f'fio exited with status {proc.returncode}: '
                            + ('; '.join(lines[-2:]) or 'no message'))
        try:
            with open(output) as f:
                text = f.read()
            data = json.loads(text[text.index('{'):])
            job = data['jobs'][0]
            stats = job['mixed']
        except (OSError, ValueError, KeyError, IndexError) as e:
            raise RunFailed(f'cannot read fio output: {e}') from None
        if job.get('error'):
            raise RunFailed(f'fio job error {job["error"]}')
        lat = stats['lat_ns']
        p99 = lat.get('percentile', {}).get('99.000000')
        if p99 is None:
            p99 = stats['clat_ns'].get('percentile', {}).get('99.000000', 0)
        if stats['total_ios'] <= 0:
            raise RunFailed('fio completed no I/O')
        return Sample(iops=stats['iops'], mibs=stats['bw_bytes'] / MIB,
                      lat_mean_us=lat['mean'] / 1000, lat_p99_us=p99 / 1000,
                      ios=stats['total_ios'])

    def run_fio(self, cell, server, inst, runtime, extra=()):
        """One fio run against @inst (None: the ceiling), with the server's
        CPU time per I/O."""
        output = self.temp_path('fio.json')
        argv = self.fio_argv(cell, self.fio_target(server, inst), runtime,
                             output, extra)
        cpu0 = cpu_seconds(inst.pid) if inst else None
        sample = self.finish_fio(self.start_fio(argv), runtime, output)
        if inst and inst.died() is None:
            sample.cpu_us_per_io = ((cpu_seconds(inst.pid) - cpu0) * 1e6
                                    / sample.ios)
        return sample

    # --- The matrix ---

    def run_matrix(self):
        for cell in self.cells:
            servers = [s for s in self.servers if s.serves(cell)]
            for rep in range(self.repeat):
                shift = rep % len(servers)
                for server in servers[shift:] + servers[:shift]:
                    self.run_cell(cell, server, rep)

    def run_cell(self, cell, server, rep):
        row = self.rows.setdefault((cell.name, server.name), Row())
        self.runs_done += 1
        if server.unavailable:
            row.status = row.status or server.unavailable
            return
        self.progress(f'{cell.name} {server.name} '
                      f'(run {rep + 1}/{self.repeat})')
        try:
            if server.role == 'ceiling':
                sample, death = self.run_fio(cell, server, None,
                                             self.runtime), None
                row.label = server.label(cell.backend)
            else:
                def measure(inst):
                    row.label = inst.label
                    return self.run_fio(cell, server, inst, self.runtime)
                sample, death = self.with_server(server, cell.backend,
                                                 measure)
        except StartFailed as e:
            self.mark_failed(server, row, e, start=True)
            return
        except RunFailed as e:
            self.mark_failed(server, row, e, start=False)
            return
        if death:
            self.record_death(server, row, death)
        row.samples.append(sample)
        value = (f'{sample.mibs:.0f} MiB/s' if cell.sequential
                 else f'{fmt_iops(sample.iops)} IOPS')
        log(f'    {value}, p99 {fmt(sample.lat_p99_us)} µs')

    def progress(self, what):
        elapsed = time.monotonic() - self.t_start
        log(f'[{self.runs_done}/{self.runs_planned} runs, '
            f'{elapsed / 60:.1f} min] {what}')

    # --- Extra measurements ---

    def extra_row(self, extra, server):
        return self.rows.setdefault((extra, server.name), Row())

    def run_extra(self, extra, server, fn, backend='file', nbd=True):
        """fn(inst) -> dict, under with_server; appended to the row.
        Without @nbd, a server that cannot serve NBD still runs."""
        row = self.extra_row(extra, server)
        if server.unavailable and nbd:
            row.status = row.status or server.unavailable
            return
        self.progress(f'{extra} {server.name}')

        def measure(inst):
            row.label = inst.label
            return fn(inst)
        try:
            value, death = self.with_server(server, backend, measure,
                                            nbd=nbd)
        except StartFailed as e:
            self.mark_failed(server, row, e, start=nbd)
            return
        except RunFailed as e:
            self.mark_failed(server, row, e, start=False)
            return
        if death:
            self.record_death(server, row, death)
            value['death'] = death
        row.samples.append(value)

    def run_extras(self):
        daemons = [s for s in self.servers if s.role != 'ceiling']
        qmp = [s for s in self.servers if s.has_qmp]
        # Start-up and QMP do not depend on the export's iothreads.
        control = [s for s in qmp if s.name in ('blockd', 'qsd')]
        reps = self.repeat
        if 'extra/rss' in self.extra_names:
            for rep in range(reps):
                for s in rotate(daemons, rep):
                    self.run_extra('extra/rss', s, self.measure_rss)
        if 'extra/startup' in self.extra_names:
            for rep in range(reps):
                for s in rotate(control, rep):
                    self.run_extra('extra/startup', s,
                                   lambda inst: {'seconds':
                                                 inst.ready_seconds},
                                   nbd=False)
        if 'extra/qmp-nodes' in self.extra_names:
            for s in control:
                self.run_extra('extra/qmp-nodes', s, self.measure_qmp_nodes,
                               backend=None, nbd=False)
        if 'extra/graph-change' in self.extra_names:
            for s in qmp:
                for phase in GRAPH_PHASES:
                    self.run_extra(f'extra/graph-change/{phase}', s,
                                   lambda inst, p=phase:
                                   self.measure_graph_change(inst, p))

    def measure_rss(self, inst):
        time.sleep(0.5)
        result = {'idle_kib': rss_kib(inst.pid), 'conns_kib': None}
        if self.python_nbd:
            return result
        helper = self.spawn([SYSTEM_PYTHON, '-c', HELPER_CONNECT, inst.uri,
                             str(self.args.connections)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
        try:
            ready, _, _ = select.select([helper.stdout], [], [], 60)
            line = helper.stdout.readline() if ready else b''
            if line.strip() != b'connected':
                helper.kill()
                err = helper.stderr.read().decode(errors='replace').strip()
                raise RunFailed(f'{self.args.connections} libnbd connections '
                                f'failed: {err.splitlines()[-1] if err else "timeout"}')
            time.sleep(0.5)
            result['conns_kib'] = rss_kib(inst.pid)
            helper.stdin.write(b'\n')
            helper.stdin.flush()
            helper.wait(30)
        finally:
            for pipe in (helper.stdin, helper.stdout, helper.stderr):
                pipe.close()
            if helper.poll() is None:
                self.kill(helper)
            self.reap(helper)
        return result

    def measure_qmp_nodes(self, inst):
        count = self.args.qmp_nodes
        queries = 10 if self.smoke else 100
        qmp = inst.qmp
        try:
            t0 = time.perf_counter()
            for i in range(count):
                qmp.cmd('blockdev-add', {'driver': 'null-co',
                                         'node-name': f'null{i}'})
            add_seconds = time.perf_counter() - t0
            latencies = []
            for _ in range(queries):
                t0 = time.perf_counter()
                nodes = qmp.cmd('query-named-block-nodes')
                latencies.append(time.perf_counter() - t0)
                if len(nodes) < count:
                    raise RunFailed(f'query-named-block-nodes returned '
                                    f'{len(nodes)} nodes, not {count}')
            return {'nodes': count, 'add_seconds': add_seconds,
                    'p50': percentile(latencies, 50),
                    'p99': percentile(latencies, 99),
                    'reply_bytes': qmp.last_reply_bytes}
        except (QMPError, OSError) as e:
            raise RunFailed(str(e)) from None

    def measure_graph_change(self, inst, phase):
        """4k randrw 70/30 QD32 over one connection while a QMP client
        runs @phase's commands in a loop (none for the baseline).  The
        longest gap between I/O completions (fio's per-I/O completion log)
        and the latency of every QMP command.  A server that dies midway
        still yields what was measured, and the command it died in."""
        cell = Cell('file', 'randrw', 4 * KIB, 32, 1)
        runtime = self.graph_runtime()
        prefix = self.temp_path('lat')
        output = self.temp_path('fio.json')
        result = {'phase': phase, 'iops': None, 'stall_ms': None,
                  'latencies': [], 'errors': {}, 'lost_in': None}
        qmp = inst.qmp
        try:
            have = inst.server.iothreads()[0]
            for io in ('io0', 'io1'):
                if io not in have:
                    qmp.cmd('object-add', {'qom-type': 'iothread', 'id': io})
            argv = self.fio_argv(cell, self.fio_target(inst.server, inst),
                                 runtime, output,
                                 [f'--write_lat_log={prefix}',
                                  '--log_avg_msec=0'])
            fio = self.start_fio(argv)
            state = {'sending': None}
            try:
                self.graph_change_loop(qmp, fio, phase, result, state)
            except OSError:
                result['lost_in'] = state['sending']
            try:
                sample = self.finish_fio(fio, runtime, output)
                result['iops'] = sample.iops
            except RunFailed:
                if not result['lost_in']:
                    raise
        except (QMPError, OSError) as e:
            raise RunFailed(f'QMP: {e}') from None
        result['stall_ms'] = longest_gap_ms(f'{prefix}_clat.1.log')
        for name in ('clat', 'lat', 'slat'):
            path = f'{prefix}_{name}.1.log'
            if os.path.exists(path):
                os.unlink(path)
        return result

    @staticmethod
    def graph_change_loop(qmp, fio, phase, result, state):
        """Until fio exits, @phase's QMP commands, GRAPH_CHANGE_PAUSE
        apart; each one's latency goes to result['latencies'].  A command
        that fails is noted (its first error) and the loop stops."""
        if phase == 'baseline':
            return
        time.sleep(0.3)       # let fio connect and start
        steps = {
            'add-del': [
                ('blockdev-add', {'driver': 'raw', 'node-name': 'tmp0',
                                  'file': 'file0', 'read-only': True}),
                ('blockdev-del', {'node-name': 'tmp0'})],
            'set-iothread': [
                ('x-blockdev-set-iothread', {'node-name': 'disk0',
                                             'iothread': io, 'force': True})
                for io in ('io1', 'io0')],
        }[phase]
        while fio.poll() is None:
            for name, args in steps:
                state['sending'] = name
                t0 = time.perf_counter()
                resp = qmp.execute(name, args)
                elapsed = time.perf_counter() - t0
                state['sending'] = None
                if 'error' in resp:
                    result['errors'][name] = resp['error'].get('desc', '')
                    return
                result['latencies'].append(elapsed)
                time.sleep(GRAPH_CHANGE_PAUSE)


def make_image(path, size):
    """A raw image of @size bytes, every block written (no holes, no
    unwritten extents that read back without touching the disk), synced
    and dropped from the page cache."""
    chunk = os.urandom(MIB)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        done = 0
        while done < size:
            done += os.write(fd, chunk[:min(MIB, size - done)])
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
