"""Generation and feature extraction split over 2 CPU processes (gloo) give exactly the 1-process numbers."""

from __future__ import annotations

import json

import torch
import torch.multiprocessing as mp

import metrics_dist_worker as worker
from metrics_helpers import random_images, write_dataset
from training.metrics import Ranks


def test_two_processes_equal_one(tmp_path):
    # 25 images in shards of 10, 10, 5 and 30 seeds in batches of 8: uneven rounds on 2 processes.
    dataset = str(write_dataset(tmp_path / "ds", random_images(25, res=16, channels=1, seed=3), per_shard=10))
    mp.spawn(worker.run, args=(2, str(tmp_path / "init"), dataset, str(tmp_path)), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = worker.metrics_and_parts(Ranks(), dataset)
    finally:
        torch.set_num_threads(threads)

    assert ranks[0]["results"] == single["results"]   # bit-identical, not approximately equal
    assert ranks[1]["results"] == single["results"]   # every rank returns rank 0's numbers
    assert set(single["results"]) == {"fid30_full", "kid30_full", "pr30_3_full_precision", "pr30_3_full_recall",
                                      "is30_mean", "is30_std"}
    assert ranks[0]["eq"] == single["eq"] and ranks[1]["eq"] == single["eq"]  # equivariance sums: bit-identical too
    assert set(single["eq"]) == {"eqt7_int", "eqt7_frac", "eqr7", "eqr5"} and single["eq"]["eqr7"] > 50
    assert ranks[0]["parts"] == single["parts"]       # gathered in part order, ragged rows intact
    assert [p for p, _, _ in single["parts"]] == list(range(7))
    assert ranks[1]["parts"] == []                    # only rank 0 consumes
    for r in ranks:
        assert r["unavailable"] is not None and "(on rank 1)" in r["unavailable"] and "missing.pth" in r["unavailable"]
