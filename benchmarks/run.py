#!/usr/bin/env python3
"""``make bench``: aioray beside the raw floors (and Ray, when importable), in one run.

Runs every workload group of ``suite.py`` in its own process — first on aioray (with the raw
asyncio / ProcessPoolExecutor / ThreadPoolExecutor floors interleaved), then on Ray if ``ray``
imports — and prints one table with ratios and PASS/MISS against the targets of the issues.
The table also goes to ``benchmarks/results.md``.

    python benchmarks/run.py                       # everything (about 3 minutes without Ray)
    python benchmarks/run.py --quick               # smaller sizes, one repetition
    python benchmarks/run.py --groups core_sync,actors
    python benchmarks/run.py --python /tmp/rayvenv/bin/python   # or AIORAY_BENCH_PYTHON=...
    python benchmarks/run.py --no-ray

Ratios are taken between figures measured side by side in the same run, because absolute times
on shared machines drift; each figure is the median of a few repetitions.
"""

# ruff: noqa: RUF001  (the table prints multiplication signs and dashes on purpose)
from __future__ import annotations

import argparse
import datetime
import glob
import importlib.util
import json
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
SUITE = os.path.join(HERE, "suite.py")
GROUPS = ["init", "core_sync", "core_async", "actors", "generators", "rss", "util", "watchdog",
          "objects", "ray_backend"]
TIMEOUT = {"aioray": 240.0, "ray": 600.0}

LOWER_IS_BETTER = {"s", "MB"}


@dataclass
class Target:
    kind: str  # "floor" (aioray / floor), "ray" (aioray / Ray), "abs" (the aioray figure)
    op: str  # ">=" or "<="
    value: float
    text: str


@dataclass
class Row:
    key: str
    label: str
    unit: str
    floor: str | None = None
    floor_label: str = ""
    targets: list[Target] = field(default_factory=list)
    ray_ref: float | None = None  # Ray's figure stated in the issues, used when Ray is absent
    ray_ref_text: str = ""


def T(kind: str, op: str, value: float, text: str) -> Target:
    return Target(kind, op, value, text)


SECTIONS: list[tuple[str, list[Row]]] = [
    ("Tasks and objects (issue 2)", [
        Row("init", "import + init() in a fresh process", "s",
            targets=[T("ray", "<=", 1 / 20, "≤ 1/20 Ray")], ray_ref=3.0,
            ray_ref_text="~3 s (issue)"),
        Row("async_rt", "async task round trip (await)", "ops/s", "asyncio_rt",
            "asyncio create_task+await"),
        Row("async_batch_gather", "async task batch (asyncio.gather)", "ops/s", "asyncio_batch",
            "asyncio create_task batch", [T("floor", ">=", 1 / 3, "≥ 1/3 floor")]),
        Row("async_batch_get_async", "async task batch (get_async)", "ops/s", "asyncio_batch",
            "asyncio create_task batch", [T("floor", ">=", 1 / 3, "≥ 1/3 floor")]),
        Row("async_batch_sync", "async task batch from sync code (get)", "ops/s",
            "asyncio_batch", "asyncio create_task batch"),
        Row("proc_rt", "process task round trip", "ops/s", "ppe_rt", "PPE submit+result",
            [T("floor", ">=", 0.7, "≥ 0.7× floor")]),
        Row("proc_batch", "process task batch", "ops/s", "ppe_batch", "PPE batch",
            [T("floor", ">=", 0.7, "≥ 0.7× floor")]),
        Row("put_get_small", "put+get small object", "ops/s"),
        Row("put_get_100mb", "put+get 100 MB array", "s", "memcpy_100mb", "one 100 MB copy"),
        Row("put_100mb", "put 100 MB array (ref dropped)", "s", "memcpy_mapped_100mb",
            "memcpy into a mapped buffer", [T("floor", "<=", 1.3, "≤ 1.3× floor"),
                                            T("ray", "<=", 1.0, "≤ Ray")]),
        Row("arr_to_proc", "100 MB array ref → process task", "s", "ppe_pickled_100mb",
            "PPE pickled array", [T("floor", "<=", 0.1, "≤ 1/10 floor"),
                                  T("ray", "<=", 1.0, "≤ Ray")]),
        Row("bytes_result_64mb", "64 MB bytes result of a process task", "s",
            "numpy_result_64mb", "64 MB numpy result"),
        Row("bytes_result_1gb", "1 GB bytes result of a process task", "s",
            "numpy_result_1gb", "1 GB numpy result", [T("floor", "<=", 2.0, "≤ 2× numpy")]),
        Row("wait_500", "wait() loop over 500 tasks", "ops/s", "ppe_wait_500",
            "PPE cf.wait loop"),
        Row("nested", "nested task (task gets a child task)", "ops/s"),
        Row("cpu_speedup", "CPU speedup, 4 tasks on 2 cores", "x", "ppe_speedup",
            "PPE speedup", [T("abs", ">=", 1.7, "≥ 1.7×")]),
    ]),
    ("Actors (issues 3, 13)", [
        Row("sync_actor_rt", "sync actor call round trip (own process)", "ops/s",
            targets=[T("ray", ">=", 3, "≥ 3× Ray")]),
        Row("sync_actor_batch", "sync actor call batch (own process)", "ops/s",
            targets=[T("ray", ">=", 4, "≥ 4× Ray")]),
        Row("thread_actor_rt", "executor=\"thread\" actor call round trip", "ops/s", "tpe_rt",
            "ThreadPool(1) submit+result"),
        Row("thread_actor_batch", "executor=\"thread\" actor call batch", "ops/s", "tpe_batch",
            "ThreadPool(1) batch"),
        Row("cpu_actors_speedup", "2 CPU-bound actors vs 1 doing both (2 cores)", "x",
            targets=[T("abs", ">=", 1.7, "≥ 1.7×")]),
        Row("async_actor_batch", "async actor call batch (gather)", "ops/s", "asyncio_batch",
            "asyncio create_task batch", [T("floor", ">=", 1 / 4, "≥ 1/4 floor"),
                                          T("ray", ">=", 10, "≥ 10× Ray")],
            ray_ref=1650, ray_ref_text="~1,650/s (issue)"),
        Row("async_actor_batch_get_async", "async actor call batch (get_async)", "ops/s",
            "asyncio_batch", "asyncio create_task batch",
            [T("floor", ">=", 1 / 4, "≥ 1/4 floor")]),
        Row("threaded_actor", "threaded actor, 8 threads, 2 ms calls", "ops/s", "tpe8_sleep",
            "ThreadPool(8) same calls"),
        Row("actor_1_to_n", "1 caller → 8 actors", "ops/s"),
        Row("actor_n_to_1", "4 process tasks → 1 actor", "ops/s"),
        Row("actor_create", "actor creation (create + first call)", "ops/s",
            targets=[T("ray", ">=", 20, "≥ 20× Ray")]),
    ]),
    ("Generators (issue 4)", [
        Row("gen_loop_next", "async generator task, next+get", "ops/s"),
        Row("gen_loop_async", "async generator task, async for+await", "ops/s", "asyncio_batch",
            "asyncio create_task batch", [T("floor", ">=", 1 / 10, "≥ 1/10 floor")]),
        Row("gen_proc_next", "process generator, next+get", "ops/s",
            targets=[T("ray", ">=", 10, "≥ 10× Ray")], ray_ref=7500,
            ray_ref_text="~5,000–7,500/s (issue)"),
        Row("gen_proc_async", "process generator, async for+await", "ops/s",
            targets=[T("ray", ">=", 10, "≥ 10× Ray")], ray_ref=7500,
            ray_ref_text="~5,000–7,500/s (issue)"),
        Row("gen_actor_next", "sync actor generator, next+get", "ops/s"),
        Row("gen_actor_async", "sync actor generator, async for+await", "ops/s"),
        Row("gen_async_actor_async", "async actor generator, async for+await", "ops/s"),
        Row("first_item", "first-item latency, process generator", "s", "ppe_rt_latency",
            "PPE round trip", [T("floor", "<=", 3, "≤ 3× floor")]),
        Row("gen_bp_footprint", "50×100 MB generator, backpressure=2: peak memory", "MB",
            targets=[T("abs", "<=", 400, "≤ 4 arrays (N+2)")]),
        Row("gen_bp_driver_rss", "same: driver peak RSS growth", "MB"),
    ]),
    ("Utilities (issue 6)", [
        Row("actorpool_map", "ActorPool.map, 2 actors", "ops/s"),
        Row("queue_throughput", "Queue, producer task → consumer task", "ops/s"),
        Row("pg_rate", "placement group create+ready+remove", "ops/s"),
    ]),
    ("Object store (issue 15)", [
        Row("spill_mbps", "spill to disk (256 MB store, 1 GB of 100 MB arrays)", "MB/s",
            "disk_write_mbps", "sequential disk write, same dir"),
        Row("restore_mbps", "restore from disk on get", "MB/s", "disk_write_mbps",
            "sequential disk write, same dir"),
    ]),
    ("Loop watchdog (issue 20)", [
        Row("watchdog_on", "async actor call batch, loop watchdog on", "ops/s", "watchdog_off",
            "same, watchdog off", [T("floor", ">=", 0.98, "≤ 2% cost")]),
    ]),
    ("State API recording (issue 16): the same batch with finished-task records on and off", [
        Row("state_on_actor", "async actor call batch, records on", "ops/s", "state_off_actor",
            "same, records off", [T("floor", ">=", 0.85, "≤ 15% cost")]),
        Row("state_on_task", "async task batch, records on", "ops/s", "state_off_task",
            "same, records off", [T("floor", ">=", 0.85, "≤ 15% cost")]),
    ]),
    ("Ray backend overhead (issue 18): aioray on Ray vs plain ray, one local Ray, same run", [
        Row("rb_task_rt", "task round trip, aioray on the Ray backend", "ops/s", "ray_task_rt",
            "plain ray", [T("floor", ">=", 0.9, "≤ 10% overhead")]),
        Row("rb_task_batch", "task batch, aioray on the Ray backend", "ops/s", "ray_task_batch",
            "plain ray", [T("floor", ">=", 0.9, "≤ 10% overhead")]),
        Row("rb_actor_rt", "actor call round trip, aioray on the Ray backend", "ops/s",
            "ray_actor_rt", "plain ray", [T("floor", ">=", 0.9, "≤ 10% overhead")]),
        Row("rb_actor_batch", "actor call batch, aioray on the Ray backend", "ops/s",
            "ray_actor_batch", "plain ray", [T("floor", ">=", 0.9, "≤ 10% overhead")]),
    ]),
]


# -- running the suite ------------------------------------------------------------------------
def bench_env() -> dict[str, str]:
    """Imports as an installed package does them: from cached bytecode. (Some environments
    set PYTHONDONTWRITEBYTECODE, which makes every process — the init benchmark, each worker
    — recompile aioray from source while Ray's site-packages ship .pyc files.) The cache goes
    outside the source tree."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = os.path.join(tempfile.gettempdir(), "aioray-bench-pycache")
    return env


def run_group(impl: str, group: str, out: str, quick: bool, verbose: bool) -> None:
    cmd = [sys.executable, SUITE, "--impl", impl, "--group", group, "--out", out]
    if quick:
        cmd.append("--quick")
    t = time.perf_counter()
    print(f"[{impl}] {group} ...", end="" if not verbose else "\n", file=sys.stderr, flush=True)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE if not verbose else None,
                            stderr=subprocess.STDOUT if not verbose else None,
                            start_new_session=True, env=bench_env())
    status = ""
    try:
        output, _ = proc.communicate(timeout=TIMEOUT[impl] * (0.5 if quick else 1))
        if proc.returncode:
            status = f" exited with {proc.returncode}"
            if output:
                tail = output.decode(errors="replace").strip().splitlines()[-3:]
                status += ": " + " | ".join(tail)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        status = " TIMED OUT (killed)"
        with open(out, "a") as f:
            f.write(json.dumps({"group_timeout": group, "impl": impl}) + "\n")
    # A killed driver cannot sweep its shared memory: do it for it.
    for path in glob.glob(f"/dev/shm/aioray-{proc.pid}-*"):
        try:
            os.unlink(path)
        except OSError:
            pass
    print(f"{'' if not verbose else f'[{impl}] {group}'} {time.perf_counter() - t:.1f} s"
          f"{status}", file=sys.stderr, flush=True)


def load(path: str) -> dict[str, Any]:
    """``{(impl, key): samples | error-string}``; floors keyed ``("floor", key)``."""
    res: dict[tuple[str, str], Any] = {}
    started: dict[tuple[str, str], bool] = {}
    timed_out: set[str] = set()
    with open(path) as f:
        for line in f:
            rec = json.loads(line)
            if "group_timeout" in rec:
                timed_out.add(rec["impl"])
                continue
            k = (rec["impl"], rec["key"])
            if rec.get("started"):
                started[k] = True
            elif "error" in rec:
                res[k] = rec["error"]
            else:
                prev = res.get(k)
                res[k] = (prev if isinstance(prev, list) else []) + rec["samples"]
                if rec.get("beside"):  # the floor interleaved with that very workload
                    res[(rec["impl"], f"{rec['key']}@{rec['beside']}")] = rec["samples"]
    for k in started:
        if k not in res:
            res[k] = "hung: its group timed out" if k[0] in timed_out else "did not finish"
    return {"results": res}


# -- formatting -------------------------------------------------------------------------------
def _sig(x: float, digits: int = 3) -> str:
    if x == 0 or not math.isfinite(x):
        return f"{x:g}"
    mag = math.floor(math.log10(abs(x)))
    dec = max(0, digits - 1 - mag)
    return f"{x:,.{dec}f}" if mag < digits else f"{round(x, -(mag - digits + 1)):,.0f}"


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return ""
    if unit == "ops/s":
        return f"{_sig(value)}/s"
    if unit == "s":
        return f"{_sig(value * 1e3)} ms" if value < 1 else f"{_sig(value)} s"
    if unit == "x":
        return f"{value:.2f}×"
    if unit == "MB":
        return f"{value:,.0f} MB"
    if unit == "MB/s":
        return f"{_sig(value)} MB/s"
    return _sig(value)


def fmt_ratio(r: float | None) -> str:
    if r is None:
        return ""
    if r >= 10:
        return f"{r:,.0f}×"
    return f"{_sig(r, 2)}×"


def median(v: Any) -> float | None:
    return statistics.median(v) if isinstance(v, list) and v else None


def short_error(msg: str) -> str:
    if "rejects this task" in msg:
        return "rejected"
    if msg.startswith("skipped"):
        return "skipped"
    if msg.startswith("n/a"):
        return "n/a"
    if msg.startswith("hung"):
        return "hung"
    return "fails"


def build(res: dict[tuple[str, str], Any], ray_ran: bool) -> tuple[list[list[str]], list[str],
                                                                     dict[str, int]]:
    header = ["Workload", "aioray", "Floor (what)", "aioray/floor", "Ray", "aioray/Ray",
              "Target", "Status"]
    rows: list[list[str]] = [header]
    notes: list[str] = []
    counts = {"PASS": 0, "MISS": 0, "n/a": 0}

    def note(text: str) -> str:
        if text not in notes:
            notes.append(text)
        return f"[{notes.index(text) + 1}]"

    for title, section in SECTIONS:
        rows.append([f"**{title}**", "", "", "", "", "", "", ""])
        for row in section:
            a_raw = res.get(("aioray", row.key))
            a = median(a_raw)
            a_txt = fmt(a, row.unit) if a is not None else (
                f"{short_error(a_raw)} {note(f'aioray {row.key}: {a_raw}')}"
                if isinstance(a_raw, str) else "—")
            f_val = None
            if row.floor:  # prefer the floor measured beside this workload
                f_val = median(res.get(("floor", f"{row.floor}@{row.key}"))) or median(
                    res.get(("floor", row.floor)))
            f_txt = f"{fmt(f_val, row.unit)} ({row.floor_label})" if f_val is not None else (
                f"— ({row.floor_label})" if row.floor else "")
            r_raw = res.get(("ray", row.key))
            r_val = median(r_raw)
            r_ref = False
            if r_val is not None:
                r_txt = fmt(r_val, row.unit)
            elif isinstance(r_raw, str):
                r_txt = f"{short_error(r_raw)} {note(f'Ray {row.key}: {r_raw}')}"
            else:
                r_txt = "" if not ray_ran else "—"
            if r_val is None and row.ray_ref is not None:
                r_val, r_ref = row.ray_ref, True
                r_txt = (r_txt + " / " if r_txt and r_txt != "—" else "") + row.ray_ref_text
            ratio_f = a / f_val if a is not None and f_val else None
            ratio_r = a / r_val if a is not None and r_val else None
            results = []
            for t in row.targets:
                x = {"floor": ratio_f, "ray": ratio_r, "abs": a}[t.kind]
                if x is None:
                    results.append(None)
                else:
                    results.append(x >= t.value if t.op == ">=" else x <= t.value)
            if not row.targets:
                status = ""
            elif any(r is False for r in results):
                status = "MISS"
            elif any(r is True for r in results):
                status = "PASS" if all(r is not None for r in results) else "PASS*"
            else:
                status = "n/a"
            if status:
                counts["PASS" if status.startswith("PASS") else status] += 1
            ratio_r_txt = fmt_ratio(ratio_r) + (" (ref)" if r_ref and ratio_r else "")
            rows.append([row.label, a_txt, f_txt, fmt_ratio(ratio_f), r_txt, ratio_r_txt,
                         ", ".join(t.text for t in row.targets), status])
    return rows, notes, counts


def render_text(rows: list[list[str]]) -> str:
    widths = [max(len(r[i].replace("**", "")) for r in rows) for i in range(len(rows[0]))]
    out = []
    for i, r in enumerate(rows):
        if r[0].startswith("**"):
            out.append("")
            out.append(r[0].strip("*"))
            continue
        out.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def render_md(rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    for r in rows[1:]:
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |")
    return "\n".join(out)


def machine_info(ray_version: str | None, load_before: float) -> str:
    try:
        import aioray
        av = aioray.__version__
    except Exception:
        av = "?"
    try:
        import uvloop  # noqa: F401
        loop = "uvloop"
    except ImportError:
        loop = "asyncio"
    return (f"{datetime.datetime.now():%Y-%m-%d %H:%M} · Python {platform.python_version()} · "
            f"{platform.system()} {platform.machine()} · {os.cpu_count()} CPUs · aioray {av} "
            f"({loop} loop thread) · Ray {ray_version or 'not installed'} · load average "
            f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after")


def main() -> None:
    ap = argparse.ArgumentParser(description="aioray benchmarks beside raw floors and Ray.")
    ap.add_argument("--python", default=os.environ.get("AIORAY_BENCH_PYTHON"),
                    help="run everything under this interpreter (e.g. a venv with Ray); "
                         "env AIORAY_BENCH_PYTHON")
    ap.add_argument("--quick", action="store_true", help="smaller sizes, one repetition")
    ap.add_argument("--groups", default=",".join(GROUPS),
                    help=f"comma-separated subset of {','.join(GROUPS)}")
    ap.add_argument("--no-ray", action="store_true", help="skip Ray even if importable")
    ap.add_argument("--out", default=os.path.join(HERE, "results.md"),
                    help="markdown results file ('' to skip)")
    ap.add_argument("--raw", default=None, help="also keep the raw JSON lines here")
    ap.add_argument("-v", "--verbose", action="store_true", help="show each figure as measured")
    args = ap.parse_args()

    # abspath, not realpath: a venv's python is a symlink to the base interpreter.
    if args.python and os.path.abspath(args.python) != os.path.abspath(sys.executable):
        argv = [a for a in sys.argv[1:]]
        if "--python" in argv:
            i = argv.index("--python")
            del argv[i:i + 2]
        argv = [a for a in argv if not a.startswith("--python=")]
        env = dict(os.environ)
        env.pop("AIORAY_BENCH_PYTHON", None)
        os.execve(args.python, [args.python, os.path.abspath(__file__), *argv], env)

    groups = [g.strip() for g in args.groups.split(",") if g.strip()]
    unknown = set(groups) - set(GROUPS)
    if unknown:
        ap.error(f"unknown groups {sorted(unknown)}; choose from {GROUPS}")
    ray_version = None
    if not args.no_ray and importlib.util.find_spec("ray") is not None:
        ray_version = subprocess.run(
            [sys.executable, "-c", "import ray; print(ray.__version__)"],
            capture_output=True, text=True).stdout.strip() or None
    impls = ["aioray"] + (["ray"] if ray_version else [])
    print(f"aioray benchmarks: {', '.join(impls)}; groups {', '.join(groups)}"
          f"{' (quick)' if args.quick else ''}", file=sys.stderr)

    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="aioray-bench-") as tmp:
        raw = args.raw or os.path.join(tmp, "results.jsonl")
        if args.raw and os.path.exists(raw):
            os.unlink(raw)
        open(raw, "w").close()
        for impl in impls:
            for g in groups:
                run_group(impl, g, raw, args.quick, args.verbose)
        res = load(raw)["results"]
    elapsed = time.perf_counter() - t0

    rows, notes, counts = build(res, ray_ran=bool(ray_version))
    info = machine_info(ray_version, load_before)
    summary = (f"{counts['PASS']} PASS, {counts['MISS']} MISS, {counts['n/a']} not measurable "
               f"· whole run {elapsed:.0f} s{' (quick)' if args.quick else ''}")
    busiest = max(load_before, os.getloadavg()[0])
    if busiest > (os.cpu_count() or 1):
        summary += (f" · NOTE: the machine was busy (load average {busiest:.1f} on "
                    f"{os.cpu_count()} CPUs): absolute figures and the CPU speedup suffer, "
                    "ratios less so")
    print()
    print(info)
    print(render_text(rows))
    print()
    for i, n in enumerate(notes, 1):
        print(f"[{i}] {n}")
    print(summary)
    if args.out:
        with open(args.out, "w") as f:
            f.write("# aioray benchmark results\n\n")
            f.write(f"{info}\n\nGenerated by `make bench` (`benchmarks/run.py`). Each figure is "
                    "the median of a few repetitions; floors are measured in the same run, "
                    "interleaved with the aioray workload they are compared with. "
                    "PASS* = the measurable targets pass, some could not be evaluated; "
                    "(ref) = Ray's figure stated in the issue, Ray not measured here.\n\n")
            f.write(render_md(rows) + "\n\n")
            for i, n in enumerate(notes, 1):
                f.write(f"[{i}] {n}\n\n")
            f.write(f"{summary}\n")
        print(f"written to {os.path.relpath(args.out)}", file=sys.stderr)


if __name__ == "__main__":
    main()
