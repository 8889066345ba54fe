"""torchrun sharding: which rank does which prompt, outputs named by index, gloo on CPU."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from fademem_core.rollout.batch import DistInfo, dist_info, output_name, run_sharded, shard
from tests.support.pack import ROOT


def test_shard_covers_every_item_once():
    for n in range(0, 12):
        for world in range(1, 5):
            parts = [shard(n, r, world) for r in range(world)]
            flat = sorted(i for p in parts for i in p)
            assert flat == list(range(n))
            # balanced: shares differ by at most one item
            assert max(map(len, parts)) - min(map(len, parts)) <= 1
    assert shard(5, 1, 2) == [1, 3]


def test_shard_rejects_bad_rank():
    with pytest.raises(ValueError, match="rank 2 of 2"):
        shard(4, 2, 2)


def test_output_names_sort_by_index():
    assert output_name(3, 10) == "0003.mp4"
    assert output_name(12345, 20000, ".png") == "12345.png"
    names = [output_name(i, 12000) for i in range(12000)]
    assert names == sorted(names)


def test_dist_info_from_env():
    assert dist_info({}) == DistInfo(0, 1, 0)
    assert not dist_info({}).launched
    info = dist_info({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert info == DistInfo(3, 4, 1) and info.launched
    with pytest.raises(ValueError, match="RANK=4"):
        dist_info({"RANK": "4", "WORLD_SIZE": "4"})
    with pytest.raises(ValueError, match="WORLD_SIZE='x'"):
        dist_info({"WORLD_SIZE": "x"})


def test_single_process_runs_everything_and_records_failures():
    def work(i, item):
        if item == "bad":
            raise ValueError("bad prompt")
        return item.upper()

    seen = []
    res = run_sharded(["a", "bad", "c"], work, info=DistInfo(),
                      on_error=lambda i, e: seen.append(i))
    assert [(r.index, r.value, r.error) for r in res] == [
        (0, "A", None), (1, None, "ValueError: bad prompt"), (2, "C", None)]
    assert seen == [1]


WORKER = textwrap.dedent("""
    import json, os, sys
    from pathlib import Path
    import torch.distributed as dist
    from fademem_core.rollout.batch import dist_info, output_name, run_sharded

    out = Path(sys.argv[1])
    items = ["p0", "p1", "p2", "p3", "boom"]

    def work(i, prompt):
        assert dist.is_initialized() and dist.get_backend() == "gloo"
        if prompt == "boom":
            raise RuntimeError("exploded")
        (out / output_name(i, len(items), ".txt")).write_text(f"{prompt} rank{dist.get_rank()}")
        return prompt

    res = run_sharded(items, work)
    assert not dist.is_initialized()  # the group created for the batch is gone
    rank = dist_info().rank
    (out / f"results{rank}.json").write_text(json.dumps(
        [[r.index, r.rank, r.value, r.error] for r in res]))
""")


def test_torchrun_two_processes_gloo(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    out = tmp_path / "out"
    out.mkdir()
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    env.pop("WORLD_SIZE", None)
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         str(script), str(out)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # each prompt written once, by the rank round-robin sharding assigns it to
    for i, rank in [(0, 0), (1, 1), (2, 0), (3, 1)]:
        assert (out / f"000{i}.txt").read_text() == f"p{i} rank{rank}"
    assert not (out / "0004.txt").exists()
    expected = [[0, 0, "p0", None], [1, 1, "p1", None], [2, 0, "p2", None],
                [3, 1, "p3", None], [4, 0, None, "RuntimeError: exploded"]]
    # every rank gets the full, index-sorted result list
    for rank in (0, 1):
        assert json.loads((out / f"results{rank}.json").read_text()) == expected
