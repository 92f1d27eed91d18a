"""The torch-fidelity adapter, with random weights (skipped when torch-fidelity is not installed).

The real weights cannot be downloaded in the test environment, so these tests check the plumbing
(file checks, channel handling, outputs, the SHA-256 warning, the full pipeline), not the numbers;
docs/metrics.md says how to check published-number agreement with the real file.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

fidelity = pytest.importorskip("torch_fidelity.feature_extractor_inceptionv3")

from metrics_helpers import ReplayGenerator, random_images, write_dataset  # noqa: E402
from training.metrics import compute_metrics, load_inception, parse_metrics  # noqa: E402
from training.metrics.inception import InceptionFeatures  # noqa: E402


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory):
    """A state dict with the reference file's keys and shapes, random values (torch-fidelity's own init)."""
    mp = pytest.MonkeyPatch()
    mp.setattr(fidelity, "load_state_dict_from_url", lambda *a, **k: {})
    mp.setattr(fidelity.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd: None)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = fidelity.FeatureExtractorInceptionV3("x", ["2048"])
    mp.undo()
    path = tmp_path_factory.mktemp("w") / "random-inception.pth"
    torch.save(net.state_dict(), path)
    return path


def test_adapter_matches_torch_fidelity_and_handles_channels(random_weights):
    with pytest.warns(UserWarning, match="not comparable with published numbers"):
        ex = load_inception(random_weights)
    assert isinstance(ex, InceptionFeatures) and load_inception(random_weights) is ex  # loaded once per process
    rgb = torch.from_numpy(random_images(3, res=32, channels=3)).permute(0, 3, 1, 2).contiguous()
    out = ex(rgb)
    assert out["features"].shape == (3, 2048) and out["logits"].shape == (3, 1008)
    direct = fidelity.FeatureExtractorInceptionV3("y", ["2048", "logits_unbiased"],
                                                  feature_extractor_weights_path=str(random_weights))
    feats, logits = direct(rgb)
    assert torch.equal(out["features"], feats) and torch.equal(out["logits"], logits)
    gray = rgb[:, :1]
    assert torch.equal(ex(gray)["features"], ex(gray.expand(-1, 3, -1, -1).contiguous())["features"])
    assert "sha256:" in ex.name


def test_pipeline_runs_with_the_inception_adapter(random_weights, tmp_path):
    images = random_images(12, res=16, channels=1)
    ds = write_dataset(tmp_path / "ds", images, per_shard=5)
    ex = load_inception(random_weights)  # warns about the SHA-256 the first time in a process only
    results = compute_metrics(ReplayGenerator(images), parse_metrics("fid12_full,is12"), ex, data=str(ds),
                              cache_dir=str(tmp_path / "c"), batch_size=4)
    values = {k: v for r in results for k, v in r.results.items()}
    assert values["fid12_full"] == pytest.approx(0.0, abs=1e-3) and np.isfinite(values["is12_mean"])
