"""Scale: the data stages on an N-row stand-in of the raw configs, each stage as its own process, as dvc runs it.

    python bench/scale.py --rows 20000                       # a quick check
    python bench/scale.py --rows 119287 1527259 --out scale.json   # linear in rows? (the 1.5M of Kimi-K2, OSS, Qwen3)

For each size: a project folder with params.yaml (download.source synthetic, download.config the chosen configs,
download.rows the question pool that gives about N rows in all, filter.duplicates as chosen), then `python -m
stages.<stage>` for download, analyze, filter and render in turn, and train's data path (bench/train_data.py:
tokenize, pack, spill; it needs models/base/tokenizer.model, from `dvc repro base_model`). Per stage it reports wall time, time per row
(rows the stage reads), peak memory of the largest single process (its VmHWM, sampled from /proc: wait4's ru_maxrss
would report the parent's size at fork, since Linux keeps an exec'ing process's old high-water mark) and of the stage's
whole process tree (main process and its workers: the sum of their PSS, so pages shared after fork count once, sampled
every 0.05 s from /proc), the peak size of the stage's temporary folder (TMPDIR, sampled every second) and the disk its
output uses (for train_data: its rows file, in TMPDIR). With two or more sizes it prints each stage's time per row at the largest size over that at the
smallest (1.0: linear; the target is within 1.2).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gemma_toolcall.dataset import toucan_raw  # noqa: E402
from gemma_toolcall.standin import raw as standin_raw  # noqa: E402

TOKENIZER = ROOT / "models" / "base" / "tokenizer.model"  # `dvc repro base_model` makes it
STAGES = {  # stage -> (command after `python`, as in dvc.yaml, the folder it writes, the folder it reads)
    "download": (["-m", "stages.download", "--out", "data/raw", "--metrics", "metrics/download.json"], "data/raw",
                 None),
    "analyze": (["-m", "stages.analyze", "--raw", "data/raw", "--out", "data/analysis"], "data/analysis", "data/raw"),
    "filter": (["-m", "stages.filter", "--raw", "data/raw", "--out", "data/filtered", "--metrics", "metrics/data.json"],
               "data/filtered", "data/raw"),
    "render": (["-m", "stages.render", "--filtered", "data/filtered", "--out", "data/formatted", "--metrics",
                "metrics/render.json"], "data/formatted", "data/filtered"),
    # train's data path (tokenize, pack, spill) without the model: its rows file is in the temporary folder
    "train_data": ([str(ROOT / "bench" / "train_data.py"), "--data", "data/formatted", "--tokenizer", str(TOKENIZER)],
                   None, "data/formatted"),
}


def disk_bytes(path: Path) -> int:
    if not path.exists():
        return 0
    return sum(f.stat().st_blocks * 512 for f in path.rglob("*") if f.is_file())


def tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return out


def proc_field(pid: int, file: str, field: str) -> int:
    """A `field:  N kB` line of /proc/<pid>/<file>, in bytes (0 once the process is gone)."""
    try:
        with open(f"/proc/{pid}/{file}") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run_stage(stage: str, cwd: Path, log: Path) -> dict:
    command, _, _ = STAGES[stage]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GEMMA_TOOLCALL_PROGRESS_EVERY": "60", "TMPDIR": str(cwd / "tmp")}
    (cwd / "tmp").mkdir(exist_ok=True)
    peak = {"pss": 0, "hwm": 0, "tmp": 0}
    done = threading.Event()
    start = time.perf_counter()
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, *command], cwd=cwd, env=env, stdout=err, stderr=err)

        def sample():
            ticks = 0
            while not done.is_set():
                pids = tree(proc.pid)
                peak["pss"] = max(peak["pss"], sum(proc_field(p, "smaps_rollup", "Pss") for p in pids))
                peak["hwm"] = max([peak["hwm"]] + [proc_field(p, "status", "VmHWM") for p in pids])
                if ticks % 20 == 0:
                    peak["tmp"] = max(peak["tmp"], disk_bytes(cwd / "tmp"))
                ticks += 1
                done.wait(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)  # the CPU time; its ru_maxrss is not this stage's (see above)
        done.set()
        sampler.join()
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{stage} failed ({proc.returncode}); see {log}:\n" + log.read_text()[-3000:])
    return {"wall_s": wall, "max_process_rss_bytes": peak["hwm"], "peak_tree_pss_bytes": peak["pss"],
            "peak_tmp_bytes": peak["tmp"], "cpu_s": usage.ru_utime + usage.ru_stime}


def pool_for(rows: int, configs: list[str]) -> int:
    """The question pool (download.rows) that gives about `rows` rows over `configs`."""
    per_question = sum(1.0 if c == "SFT" else standin_raw.SHARE[c] for c in configs)
    return max(1, round(rows / per_question))


def bench(rows: int, configs: list[str], duplicates: str, work: Path) -> dict:
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["download"].update(source="synthetic", config=configs, rows=pool_for(rows, configs))
    params["filter"]["duplicates"] = duplicates
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = {"rows_asked": rows, "question_pool": params["download"]["rows"], "configs": configs,
           "duplicates": duplicates, "stages": {}}
    for stage, (_, written, read) in STAGES.items():
        if stage == "train_data" and not TOKENIZER.exists():
            print(f"  train_data: skipped, no {TOKENIZER} (run `dvc repro base_model`)", flush=True)
            continue
        rows_read = (toucan_rows(work / read) if read else None)
        result = run_stage(stage, work, work / f"{stage}.log")
        result["rows_read"] = rows_read if read else toucan_rows(work / written)
        result["output_disk_bytes"] = disk_bytes(work / written) if written else result["peak_tmp_bytes"]
        out["stages"][stage] = result
        print(f"  {stage}: {result['wall_s']:.1f}s, {1e6 * result['wall_s'] / max(1, result['rows_read']):.0f} us/row, "
              f"largest process {result['max_process_rss_bytes'] / 2**30:.2f} GiB, "
              f"tree {result['peak_tree_pss_bytes'] / 2**30:.2f} GiB, tmp {result['peak_tmp_bytes'] / 2**30:.2f} GiB, "
              f"output {result['output_disk_bytes'] / 2**30:.2f} GiB", flush=True)
    out["rows"] = out["stages"]["analyze"]["rows_read"]
    out["metrics"] = {name: json.loads((work / "metrics" / name).read_text())
                      for name in ("download.json", "data.json", "render.json")}
    return out


def toucan_rows(folder: Path) -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(p).metadata.num_rows for p in folder.rglob("*.parquet"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[20_000], help="rows in all, one run per size")
    ap.add_argument("--configs", nargs="+", default=list(toucan_raw.RAW_CONFIGS), choices=toucan_raw.CONFIGS)
    ap.add_argument("--duplicates", choices=["keep", "best"], default="best")
    ap.add_argument("--work", type=Path, default=Path("scale-bench"), help="project folders go here (removed after "
                    "each run unless --keep)")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--out", type=Path, help="write the results as JSON")
    args = ap.parse_args()
    runs = []
    for rows in args.rows:
        print(f"{rows} rows ({', '.join(args.configs)}), duplicates: {args.duplicates}", flush=True)
        work = args.work / str(rows)
        runs.append(bench(rows, args.configs, args.duplicates, work))
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    result = {"cpus": len(os.sched_getaffinity(0)), "runs": runs}
    if len(runs) > 1:
        small, large = min(runs, key=lambda r: r["rows"]), max(runs, key=lambda r: r["rows"])
        result["per_row_time_ratio"] = {
            stage: (large["stages"][stage]["wall_s"] / large["stages"][stage]["rows_read"])
            / (small["stages"][stage]["wall_s"] / small["stages"][stage]["rows_read"])
            for stage in large["stages"] if stage in small["stages"]}
        print(f"time per row, {large['rows']} rows over {small['rows']}: "
              + ", ".join(f"{k} {v:.2f}x" for k, v in result["per_row_time_ratio"].items()))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
