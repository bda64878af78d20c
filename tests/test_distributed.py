"""compress under torch.distributed (gloo, 2 CPU processes, DDP): masks stay identical on every rank.

Each test spawns two ranks; each rank trains a DDP-wrapped LSTM LM on its own data shard and, where a schedule
reads a metric, computes it on its own shard, so any decision taken from rank-local inputs would diverge.
The scheduler compares every rank's masks whenever they change (a RankMismatchError otherwise); the tests
also compare them at the end, explicitly.
"""
from __future__ import annotations

import os
import sys
import tempfile
import traceback

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

import compress
from compress.distributed import RankMismatchError, all_gather_object, fingerprint
from compress.optim import SparseNTASGD

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="needs torch.distributed with the gloo backend")

VOCAB, STEPS, BPTT, BATCH = 40, 6, 5, 4

FAMILIES = {
    "AutomatedGradualPruner": {"initial_sparsity": 0.1, "final_sparsity": 0.6, "weights": ["rnn.weight_*"]},
    "SparsityLevelParameterPruner": {"levels": {"rnn.weight_hh_l0": 0.5, "decoder.weight": 0.3}},
    "MagnitudeParameterPruner": {"thresholds": {"rnn.weight_hh_l0": 0.05}},
    "SensitivityPruner": {"sensitivities": {"rnn.weight_ih_l0": 0.5}},
    "SplicingPruner": {"sensitivities": {"rnn.weight_hh_l0": 0.3}, "low_thresh_mult": 0.9, "hi_thresh_mult": 1.1},
    "BaiduRNNPruner": {"q": 0.2, "ramp_epoch_offset": 1, "ramp_slope_mult": 2, "weights": ["rnn.weight_hh_l0"]},
    "BlockSparseLSTMPruner": {"weights": ["rnn.weight_ih_l0", "rnn.weight_hh_l0"], "blocks": 2, "density": 0.5},
    "BlockEmbeddingPruner": {"weights": ["encoder.weight"], "blocks": 2, "density": 0.5},
    "DynamicSparsityPruner": {"density": 0.4, "growth": "momentum", "redistribution": "momentum",
                              "update_frequency": 2},
    "SelfishRNNPruner": {"density": 0.4, "death_rate": 0.5},
    "SETPruner": {"density": 0.4},
    "RigLPruner": {"density": 0.4, "update_frequency": 3},
    "UnitPruner": {"layers": ["rnn"], "consumers": {"rnn": ["decoder.weight"]}, "final_sparsity": 0.5},
    "StageWisePruner": {"max_degradation": 0.5, "retrain_epochs": 1, "max_evaluations": 12,
                        "recovery_tolerance": 0.5},
}


def model_fn(seed=0):
    from compress_models import RNNModel

    torch.manual_seed(seed)
    return RNNModel("LSTM", VOCAB, 8, 8, 1, dropout=0.2)


def shard(rank, size, seed=1):
    """This rank's slice of one global batch of sequences (time x batch)."""
    g = torch.Generator().manual_seed(seed)
    data = torch.randint(0, VOCAB, (STEPS * BPTT + 1, BATCH * size), generator=g)
    return data[:, rank * BATCH:(rank + 1) * BATCH]


def val_loss(model, data):
    inner = model.module if hasattr(model, "module") else model
    inner.eval()
    with torch.no_grad():
        out, _ = model(data[:-1], inner.init_hidden(data.size(1)))
        loss = F.cross_entropy(out.reshape(-1, VOCAB), data[1:].reshape(-1)).item()
    inner.train()
    return loss


def train(model, scheduler, optimizer, data, epochs, start=0, val=None, save=None):
    inner = model.module if hasattr(model, "module") else model
    for epoch in range(start, epochs):
        scheduler.on_epoch_begin(epoch, optimizer)
        hidden = inner.init_hidden(data.size(1))
        for i in range(STEPS):
            x, y = data[i * BPTT:(i + 1) * BPTT], data[i * BPTT + 1:(i + 1) * BPTT + 1]
            hidden = tuple(h.detach() for h in hidden)
            scheduler.on_minibatch_begin(epoch, i, STEPS, optimizer)
            out, hidden = model(x, hidden)
            loss = F.cross_entropy(out.reshape(-1, VOCAB), y.reshape(-1))
            loss = scheduler.before_backward_pass(epoch, i, STEPS, loss, optimizer)
            optimizer.zero_grad()
            loss.backward()
            scheduler.before_parameter_optimization(epoch, i, STEPS, optimizer)
            optimizer.step()
            scheduler.on_minibatch_end(epoch, i, STEPS, optimizer)
        metric = val_loss(model, val if val is not None else data)
        scheduler.on_epoch_end(epoch, optimizer, metrics={"min": metric})
        if save is not None and epoch == save[1]:
            compress.save_checkpoint(save[0], model, optimizer, scheduler, epoch=epoch)


def _worker(rank, size, init_file, scenario, args, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=size)
    try:
        result = globals()[scenario](rank, size, *args)
        torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))
    except BaseException:
        with open(os.path.join(out_dir, f"rank{rank}.err"), "w") as f:
            f.write(traceback.format_exc())
        raise
    finally:
        dist.destroy_process_group()


def spawn(scenario, *args, size=2):
    """Run ``scenario(rank, size, *args)`` on ``size`` gloo ranks; returns each rank's result."""
    with tempfile.TemporaryDirectory() as out:
        init = os.path.join(out, "init")
        try:
            mp.spawn(_worker, args=(size, init, scenario, args, out), nprocs=size, join=True)
        except Exception:
            errors = [open(os.path.join(out, f)).read() for f in sorted(os.listdir(out)) if f.endswith(".err")]
            raise AssertionError("a rank failed:\n" + "\n".join(errors)) from None
        return [torch.load(os.path.join(out, f"rank{r}.pt"), weights_only=False) for r in range(size)]


def ddp_run(rank, size, schedule, epochs, optimizer_name="sgd"):
    model = DistributedDataParallel(model_fn())
    optimizer = (SparseNTASGD(model.parameters(), lr=1.0) if optimizer_name == "ntasgd"
                 else torch.optim.SGD(model.parameters(), lr=1.0))
    data = shard(rank, size)
    val = shard(rank, size, seed=2 + rank)  # each rank's own validation shard: rank-local metrics differ
    # a metric that differs between ranks by far more than noise (rank 1 sees three times rank 0's loss): any
    # decision taken from it on each rank alone would differ
    scheduler = compress.dict_config(model, optimizer, schedule, evaluate=lambda m: val_loss(m, val) * (1 + 2 * rank))
    masks_per_epoch = []
    for epoch in range(epochs):
        train(model, scheduler, optimizer, data, epoch + 1, start=epoch, val=val)
        masks_per_epoch.append({n: m.clone() for n, m in scheduler.masks.items()})
    return {"masks": masks_per_epoch, "weights": {k: v.clone() for k, v in model.module.state_dict().items()},
            "switched": getattr(optimizer, "averaging", None)}


def all_scenarios(rank, size, path):
    """Every scenario in one spawn (starting processes costs more than the scenarios), each result or error."""
    out = {}
    work = {"families": lambda: families_scenario(rank, size, sorted(FAMILIES)),
            "ntasgd": lambda: ntasgd_scenario(rank, size), "agp": lambda: agp_scenario(rank, size),
            "divergence": lambda: divergence_scenario(rank, size), "resume": lambda: resume_scenario(rank, size, path)}
    for name, run in work.items():
        try:
            out[name] = run()
        except Exception:
            out[name] = {"error": traceback.format_exc()}
    return out


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ddp")
    results = spawn("all_scenarios", str(folder / "ckpt.pt"))
    return {"results": results, "folder": folder}


def result(ranks, scenario):
    out = [r[scenario] for r in ranks["results"]]
    for r in out:
        assert not (isinstance(r, dict) and "error" in r), r["error"] if isinstance(r, dict) else r
    return out


def schedule_for(cls):
    spec = dict(FAMILIES[cls], **{"class": cls})
    return {"pruners": {"p": spec}, "policies": [{"pruner": {"instance_name": "p"}, "starting_epoch": 0,
                                                  "ending_epoch": 3}]}


def test_every_registered_pruner_family_has_a_distributed_case():
    from compress.registry import PRUNERS

    missing = sorted(set(PRUNERS.names()) - set(FAMILIES))
    assert not missing, f"add arguments for {missing} to FAMILIES in tests/test_distributed.py"


def families_scenario(rank, size, names):
    return {name: ddp_run(rank, size, schedule_for(name), 3) for name in names}


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_every_family_holds_identical_masks_on_every_rank_after_every_update(ranks, name):
    both = result(ranks, "families")
    a, b = both[0][name], both[1][name]
    assert a["masks"][-1], f"{name}: no masks"
    for epoch, (ma, mb) in enumerate(zip(a["masks"], b["masks"])):
        assert ma.keys() == mb.keys(), (name, epoch)
        assert all(torch.equal(ma[n], mb[n]) for n in ma), (name, epoch)
    assert all(torch.equal(a["weights"][k], b["weights"][k]) for k in a["weights"]), name


def ntasgd_scenario(rank, size):
    schedule = {"pruners": {"p": {"class": "SelfishRNNPruner", "density": 0.5}},
                "extensions": {"nt": {"class": "NTASGDSwitch", "nonmono": 0}},
                "policies": [{"pruner": {"instance_name": "p"}, "starting_epoch": 0, "ending_epoch": 4},
                             {"extension": {"instance_name": "nt"}, "starting_epoch": 0, "ending_epoch": 4}]}
    return ddp_run(rank, size, schedule, 4, optimizer_name="ntasgd")


def test_the_nt_asgd_switch_takes_one_decision_for_every_rank(ranks):
    a, b = result(ranks, "ntasgd")
    assert a["switched"] == b["switched"]
    assert all(torch.equal(a["weights"][k], b["weights"][k]) for k in a["weights"])
    assert all(torch.equal(a["masks"][-1][n], b["masks"][-1][n]) for n in a["masks"][-1])


def no_dropout(model):
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0  # each rank draws its own dropout masks; one process could not draw the same ones
    return model


def agp_scenario(rank, size):
    inner = no_dropout(model_fn())
    model = DistributedDataParallel(inner)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scheduler = compress.dict_config(model, optimizer, schedule_for("AutomatedGradualPruner"))
    train(model, scheduler, optimizer, shard(rank, size), 3)
    return {"weights": {k: v.clone() for k, v in inner.state_dict().items()},
            "masks": {n[len("module."):]: m.clone() for n, m in scheduler.masks.items()}}


def test_a_deterministic_family_on_two_ranks_matches_one_process_on_the_global_batch(ranks):
    expected = result(ranks, "agp")[0]
    model = no_dropout(model_fn())
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scheduler = compress.dict_config(model, optimizer, schedule_for("AutomatedGradualPruner"))
    # DDP averages the two ranks' gradients: the gradient of the mean loss over the global batch
    train(model, scheduler, optimizer, torch.cat([shard(0, 2), shard(1, 2)], dim=1), 3)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, expected["weights"][k], rtol=1e-5, atol=1e-6)
    assert scheduler.masks.get("rnn.weight_hh_l0") is not None
    assert all(torch.equal(scheduler.masks[n], m) for n, m in expected["masks"].items())


def divergence_scenario(rank, size):
    model = DistributedDataParallel(model_fn())
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scheduler = compress.dict_config(model, optimizer, schedule_for("SparsityLevelParameterPruner"))
    scheduler.on_epoch_begin(0, optimizer)
    if rank == 1:  # one rank's mask gets one bit flipped behind the library's back
        name = "module.rnn.weight_hh_l0"
        mask = scheduler.masks[name].clone()
        mask.view(-1)[0] = ~mask.view(-1)[0]
        scheduler.masks.set_mask(name, mask)
    try:
        scheduler.on_epoch_end(0, optimizer, metrics={"min": 1.0})
    except RankMismatchError as exc:
        return str(exc)
    return None


def test_an_injected_divergence_is_caught_on_every_rank_and_names_the_tensor_and_ranks(ranks):
    messages = result(ranks, "divergence")
    for message in messages:
        assert message is not None and "module.rnn.weight_hh_l0" in message
        assert "ranks 0:" in message and "ranks 1:" in message


def resume_scenario(rank, size, path):
    schedule = schedule_for("SelfishRNNPruner")
    data = shard(rank, size)

    def build():
        model = DistributedDataParallel(model_fn())
        optimizer = torch.optim.SGD(model.parameters(), lr=1.0, momentum=0.9)
        return model, optimizer, compress.dict_config(model, optimizer, schedule)

    torch.manual_seed(10 + rank)  # each rank its own dropout stream
    model, optimizer, scheduler = build()
    train(model, scheduler, optimizer, data, 3, save=(path, 0))
    full = {k: v.clone() for k, v in model.module.state_dict().items()}
    model, optimizer, scheduler = build()
    torch.manual_seed(999)  # anything: the checkpoint restores each rank's own RNG state
    extra = compress.load_checkpoint(path, model, optimizer, scheduler)
    train(model, scheduler, optimizer, data, 3, start=int(extra["epoch"]) + 1)
    resumed = {k: v.clone() for k, v in model.module.state_dict().items()}
    return {"same": all(torch.equal(full[k], resumed[k]) for k in full), "rank": rank,
            "ranks_seen": all_gather_object(rank)}


def test_a_stopped_and_resumed_ddp_run_ends_bit_identical_to_the_uninterrupted_one(ranks):
    assert all(r["same"] for r in result(ranks, "resume"))
    folder = ranks["folder"]
    assert os.path.exists(folder / "ckpt.pt") and not [p for p in os.listdir(folder) if p.endswith(".tmp")]


def test_fingerprints_differ_for_one_flipped_bit_and_agree_for_equal_tensors():
    mask = torch.rand(1000, generator=torch.Generator().manual_seed(0)) > 0.5
    flipped = mask.clone()
    flipped[123] = ~flipped[123]
    assert fingerprint(mask) == fingerprint(mask.clone()) != fingerprint(flipped)
    assert fingerprint(torch.zeros(2, 3)) != fingerprint(torch.zeros(3, 2))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
