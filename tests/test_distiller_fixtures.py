"""Distiller's word-LM schedules load and run unchanged on the example model built with their names."""
import glob
import os

import pytest
import torch
from conftest import DISTILLER_SCHEDULES
from loops import run_epochs

import compress
from compress.reports.tables import sparsity_summary
from compress_models import RNNModel

FILES = sorted(glob.glob(os.path.join(DISTILLER_SCHEDULES, "word_lang_model*.yaml")))


def test_fixtures_are_present():
    if not os.path.isdir(DISTILLER_SCHEDULES):
        pytest.skip(f"Distiller's word-LM schedules are not at {DISTILLER_SCHEDULES} (they are not kept in this "
                    f"repository)")
    assert len(FILES) == 8


@pytest.mark.parametrize("path", FILES, ids=[os.path.basename(f) for f in FILES])
def test_distiller_schedule_runs_unchanged(path):
    torch.manual_seed(0)
    # the LARGE model's shape (2 layers, tied) at a small width: the schedules only depend on the names
    model = RNNModel("LSTM", 60, 24, 24, 2, dropout=0.65, tie_weights=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=20, weight_decay=1e-6)
    scheduler = compress.file_config(model, None, path)   # Distiller's example passes no optimizer
    last = max(p.timing.ending for _, _, p in scheduler.policies)
    data = torch.randint(0, 60, (8, 4))
    run_epochs(model, scheduler, optimizer, [(data, data.view(-1))] * 2, last + 1, clip=0.25, tell_optimizer=False)
    rows = {r.name: r for r in sparsity_summary(model)}
    for _, name, policy in scheduler.policies:
        pruner = policy.pruner
        for weight in pruner.weights:
            sparsity = rows[weight].fine / 100
            if isinstance(pruner, compress.AutomatedGradualPruner):
                assert sparsity == pytest.approx(pruner.final_sparsity, abs=0.01), (name, weight)
            else:
                assert sparsity > 0, (name, weight)
