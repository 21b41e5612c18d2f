"""`python -m bench`: throughput and scale of the shipper against the real Docker daemon.

Every scenario runs the real `shipper` program (a child process, as users run it) against the
Elasticsearch test server in count-only mode (another child process, so neither's CPU is
counted as the other's) and real containers of the test image, labelled `shipper.test=bench`
and removed afterwards. Figures come from /proc:

* shipper CPU: utime+stime of the shipper process over the measured window;
* dockerd CPU: utime+stime of dockerd over the same window (it encodes the json-file and,
  in API mode, decodes it again and frames the stream); containerd and the shims are reported
  apart (they copy the containers' output and do the same work in every mode);
* peak RSS: VmHWM of the shipper process;
* "ours s/M": the shipper's CPU plus what dockerd spends beyond writing the json-file (its
  writing cost per line is measured while the ceiling's writer runs, with no reader): the
  CPU that reading the logs costs, whoever does it. dockerd writes the file anyway.

The `cri` mode runs the noisy and backlog scenarios for the CRI log source (`source: cri`)
against a private containerd (bench/cri.py): one pod whose container writes the same lines,
containerd's CRI plugin writing them to a kubelet-style log file. There, no dockerd takes
part (its column is empty); containerd's own process writes the file, the part dockerd plays
for the json-file: `containerd_cpu_s_per_mline` is its CPU, `shim_cpu_s_per_mline` its shims',
"total s/M" the shipper's plus containerd's, and "ours s/M" the shipper's alone (reading the
files costs the runtime nothing).

    python -m bench                         # everything, full sizes (about 15 minutes)
    python -m bench --quick                 # small sizes, a smoke run (about 2 minutes)
    python -m bench --scenarios noisy --modes api,files
    python -m bench --scenarios backlog,noisy --modes files,cri
    python -m bench --churn-duration-s 10

A table goes to stdout, the JSON to bench/results/<UTC time>.json (or --out).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import docker

from bench import pagecache, procstat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.cri import BenchContainerd  # noqa: E402
from tests.support.shipper_process import ShipperProcess  # noqa: E402

IMAGE = "shipper-test-busybox:latest"
LABEL = "shipper.test"
LABEL_VALUE = "bench"
LINE_BODY = "x" * 99  # with its newline: a 100-byte line
DOCKER_SOCKET = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock").removeprefix("unix://")

FULL = {
    "noisy_lines": 2_000_000,
    "many_containers": 100,
    "many_lines": 20_000,
    "idle_containers": 500,
    "idle_measure_s": 20.0,
    "churn_rate": 20,
    "churn_lines": 100,
}
QUICK = {
    "noisy_lines": 100_000,
    "many_containers": 8,
    "many_lines": 2_000,
    "idle_containers": 20,
    "idle_measure_s": 3.0,
    "churn_rate": 5,
    "churn_lines": 20,
}


# -- helpers -------------------------------------------------------------------------------


def _tail_bytes(path: Path, size: int) -> bytes:
    try:
        with path.open("rb") as file:
            file.seek(max(0, path.stat().st_size - size))
            return file.read()
    except OSError:
        return b""


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def parse_docker_time(text: str) -> float:
    seconds, _, fraction = text.rstrip("Z").partition(".")
    base = dt.datetime.fromisoformat(seconds + "+00:00").timestamp()
    return base + float("0." + (fraction or "0"))


class EsServer:
    """The test server in count-only mode, counting items per container, in its own process."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.es_server",
                "--port",
                "0",
                "--count-only",
                "--count-by-container",
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().strip()
        if not self.url.startswith("http"):
            raise RuntimeError("the Elasticsearch test server did not start")

    def by_container(self) -> dict[str, int]:
        with urllib.request.urlopen(self.url + "/_test/stats", timeout=10) as response:
            stats = json.load(response)
        return {k: int(v) for k, v in stats.get("items_by_container", {}).items()}

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.sizes = dict(QUICK if args.quick else FULL)
        self.client = docker.DockerClient(base_url="unix://" + DOCKER_SOCKET, timeout=300)
        self.workdir = Path(tempfile.mkdtemp(prefix="shipper-bench-"))
        self.dockerd = procstat.pids_named("dockerd")
        self.results: list[dict[str, Any]] = []
        self.created: list[str] = []
        self.containerd: BenchContainerd | None = None  # started for the first cri scenario

    # -- processes --------------------------------------------------------------------

    def shims(self) -> list[int]:
        return procstat.pids_named("containerd")  # containerd and containerd-shim*

    def start_shipper(self, es: EsServer, mode: str, name: str) -> ShipperProcess:
        config: dict[str, Any] = {
            "elasticsearch": {"hosts": [es.url], "flush_interval_s": 0.2},
            "storage": {"checkpoint_interval_s": 1.0},
            "log": {"level": "info", "format": "json"},
            "processing": {"selection": {"include": [{"labels": [f"{LABEL}={LABEL_VALUE}"]}]}},
        }
        if mode == "cri":
            assert self.containerd is not None
            config["source"] = "cri"
            config["cri"] = {
                "socket": str(self.containerd.socket),
                "log_directory": str(self.containerd.log_root),
            }
        elif mode != "api" or self.args.pass_read_mode:
            config["docker"] = {"read_mode": mode}
        workdir = self.workdir / name
        workdir.mkdir(parents=True, exist_ok=True)
        shipper = ShipperProcess(workdir, es.url, config)
        shipper.start()
        try:
            shipper.wait_ready_http(timeout_s=30)
        except BaseException:
            self.stop_shipper(shipper)
            raise
        return shipper

    def start_pipeline(self, mode: str, name: str) -> tuple[EsServer, ShipperProcess]:
        """The count-only server and a ready shipper writing to it. The caller stops both in
        its `finally`; when the shipper does not get ready, neither is left running (a bad
        config used to leave the server process behind, one per scenario)."""
        es = EsServer()
        try:
            return es, self.start_shipper(es, mode, name)
        except BaseException:
            es.stop()
            raise

    @staticmethod
    def stop_shipper(shipper: ShipperProcess) -> None:
        with contextlib.suppress(Exception):
            shipper.stop(timeout_s=30)
        shipper.close()

    # -- containers -------------------------------------------------------------------

    def run_container(self, command: str, *, start: bool = True, **kwargs: Any) -> Any:
        create = self.client.containers.run if start else self.client.containers.create
        container = create(
            IMAGE,
            ["sh", "-c", command],
            detach=True,
            labels={LABEL: LABEL_VALUE},
            # No bridge: the churn scenario's start/exit rate is what deadlocks Debian's
            # dockerd 20.10.24 in libnetwork (see `containers` in tests/conftest.py).
            network_mode="none",
            **kwargs,
        )
        self.created.append(container.id)
        return container

    def remove(self, ids: list[str]) -> None:
        def one(container_id: str) -> None:
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                self.client.api.remove_container(container_id, force=True)

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(one, ids))
        gone = set(ids)
        self.created = [c for c in self.created if c not in gone]

    def writer(self, lines: int) -> str:
        return f"yes {LINE_BODY} | head -n {lines}"

    # -- scenarios ----------------------------------------------------------------------

    def ceiling(self) -> None:
        """The logs API's own rate for one container: a minimal reader that discards."""
        lines = self.sizes["noisy_lines"]
        log(f"ceiling: writing {lines} lines")
        dockerd = procstat.CpuMeter(self.dockerd).start()
        container = self.run_container(self.writer(lines))
        container.wait(timeout=600)
        write_cpu = dockerd.stop()
        reader = [sys.executable, "-m", "bench.ceiling_reader", DOCKER_SOCKET, container.id]
        dockerd = procstat.CpuMeter(self.dockerd).start()
        shims = procstat.CpuMeter(self.shims()).start()
        out = subprocess.run(reader, cwd=ROOT, capture_output=True, text=True, check=True).stdout
        total_bytes, seconds, reader_cpu, peak, _ended = out.split()
        seconds_f = float(seconds)
        self.add(
            "ceiling (logs API, minimal reader)",
            "api",
            lines,
            int(total_bytes),
            seconds_f,
            float(reader_cpu),
            dockerd.stop(),
            shims.stop(),
            float(peak),
            {
                "dockerd_cpu_s_writing": round(write_cpu, 2),
                "dockerd_cpu_s_per_mline_writing": round(write_cpu / lines * 1e6, 2),
                "note": "shipper columns are the minimal reader's",
            },
        )
        self.ceiling_lines_per_s = lines / seconds_f
        self.write_cpu_per_line = write_cpu / lines
        self.remove([container.id])
        self.follow_ceiling(lines)

    def follow_ceiling(self, lines: int) -> None:
        """The noisy scenario's workload for a reader that does nothing: the container
        followed while it writes, timed from its start to the reader's last byte. Following
        costs dockerd more than reading a finished log: it sends every message by itself."""
        log(f"ceiling: following {lines} lines while they are written")
        container = self.run_container(self.writer(lines), start=False)
        reader = [sys.executable, "-m", "bench.ceiling_reader", DOCKER_SOCKET, container.id]
        dockerd = procstat.CpuMeter(self.dockerd).start()
        container.start()
        shims = procstat.CpuMeter(self.shims()).start()
        out = subprocess.run(
            [*reader, "--follow"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
        dockerd_cpu = dockerd.stop()
        total_bytes, _seconds, reader_cpu, peak, ended = out.split()
        container.reload()
        seconds = float(ended) - parse_docker_time(container.attrs["State"]["StartedAt"])
        self.add(
            "ceiling (logs API followed while written, minimal reader)",
            "api",
            lines,
            int(total_bytes),
            seconds,
            float(reader_cpu),
            dockerd_cpu,
            shims.stop(),
            float(peak),
            {
                "dockerd_cpu_s_per_mline_minus_writing": round(
                    (dockerd_cpu / lines - self.write_cpu_per_line) * 1e6, 2
                ),
                "bytes_read": int(total_bytes),
                "note": "shipper columns are the minimal reader's",
            },
        )
        self.follow_ceiling_lines_per_s = lines / seconds
        self.remove([container.id])

    def noisy(self, mode: str) -> None:
        if mode == "cri":
            self.noisy_cri()
            return
        lines = self.sizes["noisy_lines"]
        es, shipper = self.start_pipeline(mode, f"noisy-{mode}")
        try:
            time.sleep(1.0)
            log(f"noisy ({mode}): {lines} lines from one container")
            shipper_cpu, dockerd, shims, es_cpu = self.meters(shipper, es)
            container = self.run_container(self.writer(lines))
            done_at = self.wait_counts(es, {container.id: lines}, timeout_s=900)[container.id]
            cpu = shipper_cpu.stop()
            dockerd_cpu = dockerd.stop()
            shim_cpu = shims.stop()
            es_server_cpu = es_cpu.stop()
            container.reload()
            started = parse_docker_time(container.attrs["State"]["StartedAt"])
            finished = parse_docker_time(container.attrs["State"]["FinishedAt"])
            seconds = done_at - started
            extra: dict[str, Any] = {
                "writer_seconds": round(finished - started, 2),
                "writer_lines_per_s": round(lines / max(finished - started, 1e-9)),
                # The Elasticsearch test server shares the machine: on 2 cores, its CPU is
                # CPU the shipper and dockerd do not get.
                "es_server_cpu_s_per_mline": round(es_server_cpu / lines * 1e6, 2),
                "dockerd_cpu_s_per_mline_minus_writing": None,
            }
            if hasattr(self, "write_cpu_per_line"):
                # dockerd writes the json-file whoever reads it; what reading costs it on top
                # is the part the shipper is responsible for (in files mode, next to nothing).
                extra["dockerd_cpu_s_per_mline_minus_writing"] = round(
                    (dockerd_cpu / lines - self.write_cpu_per_line) * 1e6, 2
                )
                extra["attributable_cpu_s_per_mline"] = round(
                    (cpu / lines + dockerd_cpu / lines - self.write_cpu_per_line) * 1e6, 2
                )
            if hasattr(self, "ceiling_lines_per_s"):
                extra["ratio_to_ceiling"] = round(lines / seconds / self.ceiling_lines_per_s, 2)
            if hasattr(self, "follow_ceiling_lines_per_s"):
                extra["ratio_to_follow_ceiling"] = round(
                    lines / seconds / self.follow_ceiling_lines_per_s, 2
                )
            extra.update(self.buffer_reads(shipper))
            assert shipper.process is not None
            self.add(
                "single noisy container",
                mode,
                lines,
                lines * 100,
                seconds,
                cpu,
                dockerd_cpu,
                shim_cpu,
                procstat.peak_rss_mb(shipper.process.pid),
                extra,
            )
            self.remove([container.id])
        finally:
            self.stop_shipper(shipper)
            es.stop()

    def many(self, mode: str) -> None:
        if self.docker_only("many", mode):
            return
        count, lines = self.sizes["many_containers"], self.sizes["many_lines"]
        es, shipper = self.start_pipeline(mode, f"many-{mode}")
        try:
            log(f"many ({mode}): creating {count} containers x {lines} lines")
            with ThreadPoolExecutor(8) as pool:
                fleet = list(
                    pool.map(
                        lambda _: self.run_container(self.writer(lines), start=False),
                        range(count),
                    )
                )
            time.sleep(1.0)
            assert shipper.process is not None
            shipper_cpu = procstat.CpuMeter([shipper.process.pid]).start()
            dockerd = procstat.CpuMeter(self.dockerd).start()
            shims = procstat.CpuMeter(self.shims()).start()
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda c: c.start(), fleet))
            done = self.wait_counts(es, {c.id: lines for c in fleet}, timeout_s=900)
            cpu, dockerd_cpu, shim_cpu = shipper_cpu.stop(), dockerd.stop(), shims.stop()
            starts = {}
            for container in fleet:
                container.reload()
                starts[container.id] = parse_docker_time(container.attrs["State"]["StartedAt"])
            first_start = min(starts.values())
            lags = sorted(done[c] - starts[c] for c in done)
            completions = sorted(done.values())
            seconds = completions[-1] - first_start
            self.add(
                f"{count} containers x {lines} lines",
                mode,
                count * lines,
                count * lines * 100,
                seconds,
                cpu,
                dockerd_cpu,
                shim_cpu,
                procstat.peak_rss_mb(shipper.process.pid),
                {
                    "completion_spread_s": round(completions[-1] - completions[0], 2),
                    "start_spread_s": round(max(starts.values()) - first_start, 2),
                    "per_container_s_min": round(lags[0], 2),
                    "per_container_s_p50": round(lags[len(lags) // 2], 2),
                    "per_container_s_max": round(lags[-1], 2),
                },
            )
            self.remove([c.id for c in fleet])
        finally:
            self.stop_shipper(shipper)
            es.stop()

    def idle(self, modes: list[str]) -> None:
        modes = [mode for mode in modes if not self.docker_only("idle", mode)]
        if not modes:
            return
        count = self.sizes["idle_containers"]
        log(f"idle: starting {count} quiet containers")
        with ThreadPoolExecutor(8) as pool:
            fleet = list(
                pool.map(lambda _: self.run_container("echo ready; exec sleep 86400"), range(count))
            )
        try:
            for mode in modes:
                self.idle_once(fleet, mode)
        finally:
            log(f"idle: removing {count} containers")
            self.remove([c.id for c in fleet])

    def idle_once(self, fleet: list[Any], mode: str) -> None:
        count = len(fleet)
        es = EsServer()
        try:
            started = time.monotonic()
            shipper = self.start_shipper(es, mode, f"idle-{mode}")
            assert shipper.process is not None
            try:
                deadline = time.monotonic() + 300
                while time.monotonic() < deadline:
                    # Others' containers may be followed briefly too (until not selected).
                    if shipper.metric("shipper_containers_followed") >= count:
                        break
                    time.sleep(0.1)
                follow_s = time.monotonic() - started
                self.wait_counts(es, {c.id: 1 for c in fleet}, timeout_s=300)
                time.sleep(3.0)  # let start-up work settle
                measure_s = self.sizes["idle_measure_s"]
                shipper_cpu = procstat.CpuMeter([shipper.process.pid]).start()
                dockerd = procstat.CpuMeter(self.dockerd).start()
                time.sleep(measure_s)
                cpu, dockerd_cpu = shipper_cpu.stop(), dockerd.stop()
                self.add(
                    f"{count} idle containers followed",
                    mode,
                    0,
                    0,
                    measure_s,
                    cpu,
                    dockerd_cpu,
                    0.0,
                    procstat.peak_rss_mb(shipper.process.pid),
                    {
                        "time_to_follow_all_s": round(follow_s, 2),
                        "followed": shipper.metric("shipper_containers_followed"),
                        "idle_cpu_percent_of_core": round(100 * cpu / measure_s, 2),
                        "dockerd_idle_cpu_percent_of_core": round(100 * dockerd_cpu / measure_s, 2),
                        "rss_mb": round(procstat.rss_mb(shipper.process.pid), 1),
                        "open_fds": procstat.open_fds(shipper.process.pid),
                    },
                )
            finally:
                self.stop_shipper(shipper)
        finally:
            es.stop()

    def churn(self, mode: str) -> None:
        if self.docker_only("churn", mode):
            return
        rate, lines = self.sizes["churn_rate"], self.sizes["churn_lines"]
        duration = self.args.churn_duration_s or (5.0 if self.args.quick else 60.0)
        es, shipper = self.start_pipeline(mode, f"churn-{mode}")
        assert shipper.process is not None
        pid = shipper.process.pid
        launched: list[str] = []
        try:
            # Warm up: a few containers so lazily built state exists before "before".
            warm = [self.run_container(f"seq 1 {lines}").id for _ in range(5)]
            self.wait_counts(es, dict.fromkeys(warm, lines), timeout_s=120)
            time.sleep(1.0)
            before = {"rss_mb": procstat.rss_mb(pid), "open_fds": procstat.open_fds(pid)}
            before["followed"] = shipper.metric("shipper_containers_followed")
            log(f"churn ({mode}): {rate} containers/s for {duration:.0f} s, {lines} lines each")
            shipper_cpu = procstat.CpuMeter([pid]).start()
            dockerd = procstat.CpuMeter(self.dockerd).start()
            shims = procstat.CpuMeter(self.shims()).start()
            started = time.monotonic()
            started_wall = time.time()
            with ThreadPoolExecutor(16) as pool:
                futures = []
                n = 0
                while time.monotonic() - started < duration:
                    due = started + n / rate
                    delay = due - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    futures.append(pool.submit(self.run_container, f"seq 1 {lines}"))
                    n += 1
                launched = [f.result().id for f in futures]
            launch_s = time.monotonic() - started
            done = self.wait_counts(es, dict.fromkeys(launched, lines), timeout_s=600)
            seconds = max(done.values()) - started_wall
            cpu, dockerd_cpu, shim_cpu = shipper_cpu.stop(), dockerd.stop(), shims.stop()
            time.sleep(3.0)
            after = {
                "rss_mb": procstat.rss_mb(pid),
                "open_fds": procstat.open_fds(pid),
                "followed": shipper.metric("shipper_containers_followed"),
            }
            counts = es.by_container()
            lost = sum(max(0, lines - counts.get(c, 0)) for c in launched)
            extra_docs = sum(max(0, counts.get(c, 0) - lines) for c in launched)
            self.remove(launched + warm)
            time.sleep(3.0)
            removed = {
                "rss_mb": procstat.rss_mb(pid),
                "open_fds": procstat.open_fds(pid),
                "followed": shipper.metric("shipper_containers_followed"),
            }
            # Idle connections to Docker close after aiohttp's 15 s keep-alive: what is still
            # open then is held, not pooled.
            time.sleep(16.0)
            idle = {
                "rss_mb": procstat.rss_mb(pid),
                "open_fds": procstat.open_fds(pid),
                "fd_kinds": procstat.fd_kinds(pid),
            }
            self.add(
                f"churn: {rate}/s short-lived containers",
                mode,
                len(launched) * lines,
                len(launched) * lines * len(f"{lines}\n"),
                seconds,
                cpu,
                dockerd_cpu,
                shim_cpu,
                procstat.peak_rss_mb(pid),
                {
                    "containers": len(launched),
                    "achieved_rate_per_s": round(len(launched) / launch_s, 1),
                    "lines_lost": lost,
                    "lines_extra": extra_docs,
                    "before": before,
                    "after_all_shipped": after,
                    "after_removal": removed,
                    "after_idle_16s": idle,
                },
            )
        finally:
            self.stop_shipper(shipper)
            es.stop()

    def backlog(self, mode: str) -> None:
        """Catching up: a container's lines all written before the shipper starts (as after
        an outage of the shipper), then shipped with nothing else running. What the shipper
        alone costs and how fast it drains a backlog, without the writer and dockerd's
        writing competing for the cores (the noisy scenario's figures move with them)."""
        if mode == "cri":
            self.backlog_cri()
            return
        lines = self.sizes["noisy_lines"]
        marker = "backlog-written"
        container = self.run_container(f"{self.writer(lines)}; echo {marker}; sleep 3600")
        log(f"backlog ({mode}): writing {lines} lines before the shipper starts")
        log_path = Path(self.client.api.inspect_container(container.id)["LogPath"])
        deadline = time.monotonic() + 600
        while marker.encode() not in _tail_bytes(log_path, 200):
            if time.monotonic() > deadline:
                raise TimeoutError("the backlog writer did not finish")
            time.sleep(0.2)
        es, shipper = self.start_pipeline(mode, f"backlog-{mode}")
        try:
            assert shipper.process is not None
            # From readiness on: start-up (imports, connections) is not part of the rate.
            started = time.time()
            shipper_cpu, dockerd, shims, es_cpu = self.meters(shipper, es)
            done_at = self.wait_counts(es, {container.id: lines + 1}, timeout_s=900)[container.id]
            cpu = shipper_cpu.stop()
            extra: dict[str, Any] = {
                "es_server_cpu_s_per_mline": round(es_cpu.stop() / lines * 1e6, 2),
                **self.buffer_reads(shipper),
            }
            self.add(
                "backlog: written before the start",
                mode,
                lines,
                lines * 100,
                done_at - started,
                cpu,
                dockerd.stop(),
                shims.stop(),
                procstat.peak_rss_mb(shipper.process.pid),
                extra,
            )
            self.remove([container.id])
        finally:
            self.stop_shipper(shipper)
            es.stop()

    # -- the CRI source (bench/cri.py) ------------------------------------------------------

    def bench_containerd(self) -> BenchContainerd:
        if self.containerd is None:
            log("cri: starting a private containerd")
            self.containerd = BenchContainerd()
        return self.containerd

    def noisy_cri(self) -> None:
        """The noisy scenario for the CRI source: one pod's container writes the lines while
        the shipper follows its log file."""
        lines = self.sizes["noisy_lines"]
        containerd = self.bench_containerd()
        es, shipper = self.start_pipeline("cri", "noisy-cri")
        try:
            time.sleep(1.0)
            log(f"noisy (cri): {lines} lines from one pod's container")
            pod = containerd.pod({LABEL: LABEL_VALUE})
            assert shipper.process is not None
            shipper_cpu = procstat.CpuMeter([shipper.process.pid]).start()
            daemon = procstat.CpuMeter(containerd.daemon_pids()).start()
            shims = procstat.CpuMeter(containerd.shim_pids()).start()
            es_cpu = procstat.CpuMeter([es.process.pid]).start()
            container = containerd.start(pod, self.writer(lines))
            done_at = self.wait_counts(es, {container.id: lines}, timeout_s=900)[container.id]
            cpu, daemon_cpu, shim_cpu = shipper_cpu.stop(), daemon.stop(), shims.stop()
            es_server_cpu = es_cpu.stop()
            started, finished = containerd.times(container)
            seconds = done_at - started
            self.add(
                "single noisy container",
                "cri",
                lines,
                lines * 100,
                seconds,
                cpu,
                None,
                daemon_cpu + shim_cpu,
                procstat.peak_rss_mb(shipper.process.pid),
                {
                    "writer_seconds": round(finished - started, 2) if finished else None,
                    "writer_lines_per_s": round(lines / max(finished - started, 1e-9))
                    if finished
                    else None,
                    "es_server_cpu_s_per_mline": round(es_server_cpu / lines * 1e6, 2),
                    **self.cri_columns(lines, cpu, daemon_cpu, shim_cpu),
                    **self.buffer_reads(shipper),
                },
            )
            containerd.remove(container)
        finally:
            self.stop_shipper(shipper)
            es.stop()

    def backlog_cri(self) -> None:
        """The backlog scenario for the CRI source: the log file written before the start."""
        lines = self.sizes["noisy_lines"]
        marker = "backlog-written"
        containerd = self.bench_containerd()
        container = containerd.start(
            containerd.pod({LABEL: LABEL_VALUE}),
            f"{self.writer(lines)}; echo {marker}; sleep 3600",
        )
        try:
            log(f"backlog (cri): writing {lines} lines before the shipper starts")
            containerd.wait_for(container, marker.encode(), timeout_s=600)
            es, shipper = self.start_pipeline("cri", "backlog-cri")
            try:
                assert shipper.process is not None
                started = time.time()
                shipper_cpu = procstat.CpuMeter([shipper.process.pid]).start()
                daemon = procstat.CpuMeter(containerd.daemon_pids()).start()
                shims = procstat.CpuMeter(containerd.shim_pids()).start()
                es_cpu = procstat.CpuMeter([es.process.pid]).start()
                done = self.wait_counts(es, {container.id: lines + 1}, timeout_s=900)
                cpu, daemon_cpu, shim_cpu = shipper_cpu.stop(), daemon.stop(), shims.stop()
                self.add(
                    "backlog: written before the start",
                    "cri",
                    lines,
                    lines * 100,
                    done[container.id] - started,
                    cpu,
                    None,
                    daemon_cpu + shim_cpu,
                    procstat.peak_rss_mb(shipper.process.pid),
                    {
                        "es_server_cpu_s_per_mline": round(es_cpu.stop() / lines * 1e6, 2),
                        **self.cri_columns(lines, cpu, daemon_cpu, shim_cpu),
                        **self.buffer_reads(shipper),
                    },
                )
            finally:
                self.stop_shipper(shipper)
                es.stop()
        finally:
            containerd.remove(container)

    @staticmethod
    def cri_columns(lines: int, cpu: float, daemon_cpu: float, shim_cpu: float) -> dict[str, Any]:
        """A cri row's runtime figures (see the module's docstring); they replace the
        dockerd-based totals of the Docker rows."""
        return {
            "containerd_cpu_s_per_mline": round(daemon_cpu / lines * 1e6, 2),
            "shim_cpu_s_per_mline": round(shim_cpu / lines * 1e6, 2),
            "total_cpu_s_per_mline": round((cpu + daemon_cpu) / lines * 1e6, 2),
            "attributable_cpu_s_per_mline": round(cpu / lines * 1e6, 2),
        }

    # -- measurement plumbing ----------------------------------------------------------------

    def meters(
        self, shipper: ShipperProcess, es: EsServer
    ) -> tuple[procstat.CpuMeter, procstat.CpuMeter, procstat.CpuMeter, procstat.CpuMeter]:
        """CPU meters of the shipper, dockerd, containerd and the shims, the test server."""
        assert shipper.process is not None
        return (
            procstat.CpuMeter([shipper.process.pid]).start(),
            procstat.CpuMeter(self.dockerd).start(),
            procstat.CpuMeter(self.shims()).start(),
            procstat.CpuMeter([es.process.pid]).start(),
        )

    @staticmethod
    def buffer_reads(shipper: ShipperProcess) -> dict[str, Any]:
        """Blocks the output took from the buffer's memory / from its files."""
        with contextlib.suppress(Exception):
            name = "shipper_buffer_blocks_read_total"
            return {
                "buffer_blocks_from_cache": int(shipper.metric(name, {"source": "cache"})),
                "buffer_blocks_from_file": int(shipper.metric(name, {"source": "file"})),
            }
        return {}

    def wait_counts(
        self, es: EsServer, expected: dict[str, int], timeout_s: float
    ) -> dict[str, float]:
        """Polls the test server until every container has its count; wall time of each."""
        done: dict[str, float] = {}
        deadline = time.monotonic() + timeout_s
        interval = 0.05 if len(expected) == 1 else 0.25
        while len(done) < len(expected):
            counts = es.by_container()
            now = time.time()
            for container_id, want in expected.items():
                if container_id not in done and counts.get(container_id, 0) >= want:
                    done[container_id] = now
            if time.monotonic() > deadline:
                missing = {c: counts.get(c, 0) for c in expected if c not in done}
                raise TimeoutError(f"containers not fully shipped in time: {list(missing)[:5]}")
            if len(done) < len(expected):
                time.sleep(interval)
        return done

    def add(
        self,
        scenario: str,
        mode: str,
        lines: int,
        nbytes: int,
        seconds: float,
        shipper_cpu: float,
        dockerd_cpu: float | None,
        shim_cpu: float,
        peak_rss: float,
        extra: dict[str, Any],
    ) -> None:
        """`dockerd_cpu` None: no dockerd took part (cri); `extra` goes last, so it may
        replace a column (the cri rows' totals)."""

        def per_m(cpu: float | None) -> float | None:
            return round(cpu / lines * 1e6, 2) if lines and cpu is not None else None

        result = {
            "scenario": scenario,
            "mode": mode,
            "lines": lines,
            "seconds": round(seconds, 2),
            "lines_per_s": round(lines / seconds) if lines and seconds > 0 else None,
            "mb_per_s": round(nbytes / seconds / 1e6, 1) if lines and seconds > 0 else None,
            "shipper_cpu_s": round(shipper_cpu, 2),
            "dockerd_cpu_s": None if dockerd_cpu is None else round(dockerd_cpu, 2),
            "containerd_cpu_s": round(shim_cpu, 2),
            "shipper_cpu_s_per_mline": per_m(shipper_cpu),
            "dockerd_cpu_s_per_mline": per_m(dockerd_cpu),
            "total_cpu_s_per_mline": per_m(shipper_cpu + (dockerd_cpu or 0.0)),
            "peak_rss_mb": round(peak_rss, 1),
            "loadavg_after": loadavg(),
            **extra,
        }
        self.results.append(result)
        log(json.dumps(result))

    def remove_leftovers(self) -> int:
        """Removes the containers of an earlier run that was interrupted: the shipper here
        follows every container with the bench label, so their logs would count as ours."""
        leftovers = self.client.api.containers(
            all=True, filters={"label": f"{LABEL}={LABEL_VALUE}"}
        )
        self.remove([c["Id"] for c in leftovers])
        return len(leftovers)

    @staticmethod
    def docker_only(scenario: str, mode: str) -> bool:
        """The scenarios with many containers have no cri version (yet)."""
        if mode == "cri":
            log(f"{scenario}: no cri version, skipped")
            return True
        return False

    def cleanup(self) -> None:
        self.remove(list(self.created))
        if self.containerd is not None:
            self.containerd.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def print_table(results: list[dict[str, Any]]) -> None:
    columns = [
        ("scenario", "scenario", 36),
        ("mode", "mode", 5),
        ("lines_per_s", "lines/s", 9),
        ("mb_per_s", "MB/s", 6),
        ("shipper_cpu_s_per_mline", "shipper s/M", 11),
        ("dockerd_cpu_s_per_mline", "dockerd s/M", 11),
        ("total_cpu_s_per_mline", "total s/M", 9),
        ("attributable_cpu_s_per_mline", "ours s/M", 8),
        ("peak_rss_mb", "peak RSS MB", 11),
    ]
    print(" | ".join(title.ljust(width) for _, title, width in columns) + " | notes")
    print("-|-".join("-" * width for *_, width in columns) + "-|------")
    keys = {key for key, *_ in columns} | {
        "lines",
        "seconds",
        "shipper_cpu_s",
        "dockerd_cpu_s",
        "containerd_cpu_s",
        "loadavg_after",
    }
    for result in results:
        cells = [
            ("-" if result.get(key) is None else str(result[key])).ljust(width)
            for key, _, width in columns
        ]
        notes = ", ".join(f"{k}={v}" for k, v in result.items() if k not in keys)
        print(" | ".join(cells) + " | " + notes)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument(
        "--scenarios",
        default="ceiling,noisy,backlog,many,idle,churn",
        help="comma-separated subset of ceiling,noisy,backlog,many,idle,churn",
    )
    parser.add_argument(
        "--modes",
        default="api,files",
        help="docker.read_mode values to run the shipper with, and cri: the CRI source on a "
        "private containerd (noisy and backlog only)",
    )
    parser.add_argument("--churn-duration-s", type=float, default=None, help="default 60 (5 quick)")
    parser.add_argument("--noisy-lines", type=int, default=None, help="default 2,000,000")
    parser.add_argument(
        "--no-read-mode",
        dest="pass_read_mode",
        action="store_false",
        help="do not set docker.read_mode (to benchmark a build that predates it; api only)",
    )
    parser.add_argument("--out", type=Path, default=None, help="JSON results path")
    args = parser.parse_args()
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bench = Bench(args)
    if args.noisy_lines:
        bench.sizes["noisy_lines"] = args.noisy_lines
    meta = {
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "loadavg_before": loadavg(),
        "quick": args.quick,
        "sizes": bench.sizes,
        "git": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip(),
    }
    log(f"machine: {meta['cpu']}, {meta['cores']} cores, load {meta['loadavg_before']}")
    meta["page_cache_cpu_s_per_gib"] = pagecache.cpu_s_per_gib(bench.workdir)
    meta["free_page_reporting"] = pagecache.free_page_reporting()
    log(f"page cache, CPU-s per GiB written: {meta['page_cache_cpu_s_per_gib']}")
    if leftovers := bench.remove_leftovers():
        log(f"removed {leftovers} containers an interrupted run left behind")
    try:
        if "ceiling" in scenarios:
            bench.ceiling()
        for mode in modes:
            if "noisy" in scenarios:
                bench.noisy(mode)
        for mode in modes:
            if "backlog" in scenarios:
                bench.backlog(mode)
        for mode in modes:
            if "many" in scenarios:
                bench.many(mode)
        if "idle" in scenarios:
            bench.idle(modes)
        for mode in modes:
            if "churn" in scenarios:
                bench.churn(mode)
    finally:
        bench.cleanup()
    meta["loadavg_after"] = loadavg()
    out = args.out or ROOT / "bench" / "results" / (
        time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + ".json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": meta, "results": bench.results}, indent=2))
    print_table(bench.results)
    print(f"\nload average before {meta['loadavg_before']}, after {meta['loadavg_after']}")
    print(f"page cache, CPU-s per GiB written: {meta['page_cache_cpu_s_per_gib']}")
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
