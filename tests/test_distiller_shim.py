"""compress.distiller: Distiller's word-LM example and quantize_lstm notebook, written with Distiller's calls, run on
compress with ``import compress.distiller as distiller`` as the edit; what is not covered says what to use instead."""
import logging
import math
import os
import sys
from collections import OrderedDict
from copy import deepcopy

import pytest
import torch
from conftest import DISTILLER_SCHEDULES
from torch import nn

import compress.distiller as distiller
import compress.distiller.apputils as apputils
from compress.distiller.data_loggers import PythonLogger
from compress.errors import ArgumentError, CompressError
from compress_models import RNNModel, batchify, evaluate, get_batch, repackage_hidden, synthetic_corpus

AGP_SCHEDULE = os.path.join(DISTILLER_SCHEDULES, "word_lang_model.schedule_agp.yaml")

# Distiller's examples/word_language_model/logging.conf, verbatim (main.py passes 'logging.conf')
LOGGING_CONF = """[formatters]
keys: simple, time_simple

[handlers]
keys: console, file

[loggers]
keys: root, app_cfg

[formatter_simple]
format: %(message)s

[formatter_time_simple]
format: %(asctime)s - %(message)s

[handler_console]
class: StreamHandler
propagate: 0
args: []
formatter: simple

[handler_file]
class: FileHandler
mode: 'w'
args=('%(logfilename)s', 'w')
formatter: time_simple

[logger_root]
level: INFO
propagate: 1
handlers: console, file

[logger_app_cfg]
# Use this logger to log the application configuration and execution environment
level: DEBUG
qualname: app_cfg
propagate: 0
handlers: file
"""


@pytest.fixture
def root_logging():
    """config_pylogger configures the root logger, as Distiller's does: put it back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    cfg = logging.getLogger("app_cfg")
    cfg_handlers, cfg_propagate = cfg.handlers[:], cfg.propagate
    yield
    for logger, saved in ((root, handlers), (cfg, cfg_handlers)):
        for h in logger.handlers[:]:
            if h not in saved:
                h.close()
            logger.removeHandler(h)
        for h in saved:
            logger.addHandler(h)
    root.setLevel(level)
    cfg.propagate = cfg_propagate


def agp_target(epoch, start, end, initial, final, frequency=1):
    """Distiller's AGP formula (docs/distiller-compat.md §1)."""
    span = ((end - start - 1) // frequency) * frequency
    t = min(max(epoch, start), start + span)
    return final + (initial - final) * (1 - (t - start) / span) ** 3


def zero_share(t):
    return float((t == 0).sum()) / t.numel()


def test_main_py_loop_runs_distillers_agp_schedule(tmp_path, monkeypatch, root_logging):
    """examples/word_language_model/main.py's calls, in its order, on the embedded corpus."""
    if not os.path.isfile(AGP_SCHEDULE):
        pytest.skip(f"Distiller's word_lang_model.schedule_agp.yaml is not at {AGP_SCHEDULE} (not kept in this "
                    f"repository)")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "logging.conf").write_text(LOGGING_CONF)
    torch.manual_seed(1111)
    corpus = synthetic_corpus(seed=0, vocab_size=40, train_tokens=480, valid_tokens=120, test_tokens=120)
    batch_size, eval_batch_size, bptt, clip, epochs = 4, 4, 10, 0.25, 22
    train_data = batchify(corpus.train, batch_size)
    val_data = batchify(corpus.valid, eval_batch_size)
    ntokens = len(corpus.dictionary)
    model = RNNModel("LSTM", ntokens, 16, 16, 2, 0.2, True)
    criterion = nn.CrossEntropyLoss()

    def train(epoch, optimizer, compression_scheduler=None):
        model.train()
        steps_per_epoch = math.ceil(train_data.size(0) / bptt)
        hidden = model.init_hidden(batch_size)
        for batch, i in enumerate(range(0, train_data.size(0) - 1, bptt)):
            data, targets = get_batch(train_data, i, bptt)
            hidden = repackage_hidden(hidden)
            compression_scheduler.on_minibatch_begin(epoch, minibatch_id=batch, minibatches_per_epoch=steps_per_epoch)
            output, hidden = model(data, hidden)
            loss = criterion(output.view(-1, ntokens), targets)
            loss = compression_scheduler.before_backward_pass(epoch, minibatch_id=batch,
                                                              minibatches_per_epoch=steps_per_epoch, loss=loss,
                                                              return_loss_components=False)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            optimizer.step()
            compression_scheduler.on_minibatch_end(epoch, minibatch_id=batch, minibatches_per_epoch=steps_per_epoch)
            stats = ("Performance/Training/", OrderedDict([("Loss", loss.item()), ("Perplexity", math.exp(loss.item())),
                                                           ("LR", optimizer.param_groups[0]["lr"])]))
            distiller.log_training_progress(stats, model.named_parameters(), epoch, batch + 1, steps_per_epoch, 1,
                                            [pylogger])

    msglogger = apputils.config_pylogger("logging.conf", None)
    pylogger = PythonLogger(msglogger)
    compression_scheduler = distiller.config.file_config(model, None, AGP_SCHEDULE)
    optimizer = torch.optim.SGD(model.parameters(), 20, momentum=0.0, weight_decay=0.0)
    # main.py also passes verbose=True, an argument PyTorch 2.x removed
    lr_scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", patience=0, factor=0.5)
    pruned = {"rnn.weight_ih_l0": (2, 20, 0.05, 0.60), "rnn.weight_hh_l1": (2, 20, 0.05, 0.80),
              "encoder.weight": (3, 21, 0.05, 0.90)}
    best_val_loss = float("inf")
    for epoch in range(epochs):
        compression_scheduler.on_epoch_begin(epoch)
        train(epoch, optimizer, compression_scheduler)
        val_loss = evaluate(model, val_data, bptt, eval_batch_size)
        msglogger.info(f"| end of epoch {epoch:3d} | valid loss {val_loss:5.3f} | valid ppl {math.exp(val_loss):8.2f}")
        distiller.log_weights_sparsity(model, epoch, loggers=[pylogger])
        for name, (start, end, initial, final) in pruned.items():
            weight = dict(model.named_parameters())[name]
            expected = agp_target(epoch, start, end, initial, final) if epoch >= start else 0.0
            assert zero_share(weight) == pytest.approx(expected, abs=2 / weight.numel()), (name, epoch)
        apputils.save_checkpoint(epoch, "RNNModel", model, optimizer, compression_scheduler,
                                 extras={"val_loss": val_loss}, is_best=val_loss < best_val_loss,
                                 dir=msglogger.logdir)
        best_val_loss = min(best_val_loss, val_loss)
        lr_scheduler.step(val_loss)
        compression_scheduler.on_epoch_end(epoch)

    summary = distiller.model_summary(model, "sparsity", "wikitext2", logdir=msglogger.logdir)
    assert "encoder.weight (= decoder.weight)" in summary and "Total sparsity" in summary
    masks = distiller.masks_sparsity_tbl_summary(model, compression_scheduler)
    assert [line.split("|")[2].strip() for line in masks.splitlines() if "encoder.weight" in line] == ["90.00"]

    log_text = open(msglogger.log_filename).read()
    assert "Epoch: [21][" in log_text and "Total sparsity:" in log_text and "| end of epoch  21 |" in log_text
    assert os.path.isfile(os.path.join(msglogger.logdir, "weights_sparsity.csv"))
    assert os.path.isfile(os.path.join(msglogger.logdir, "best.pth.tar"))

    torch.manual_seed(5)
    fresh = RNNModel("LSTM", ntokens, 16, 16, 2, 0.2, True)
    loaded, scheduler, new_optimizer, start_epoch = apputils.load_checkpoint(
        fresh, os.path.join(msglogger.logdir, "checkpoint.pth.tar"))
    assert start_epoch == epochs and isinstance(new_optimizer, torch.optim.SGD)
    assert new_optimizer.param_groups[0]["lr"] == optimizer.param_groups[0]["lr"]
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
    for name in pruned:
        assert torch.equal(scheduler.zeros_mask_dict[name].mask, compression_scheduler.zeros_mask_dict[name].mask)


class DistillerRNNModel(nn.Module):
    """Distiller's examples/word_language_model/model.py DistillerRNNModel (its `from distiller.modules import *`
    made `from compress.distiller.modules import DistillerLSTM`)."""

    def __init__(self, ntoken, ninp, nhid, nlayers, dropout=0.5, tie_weights=False):
        super().__init__()
        self.ntoken, self.ninp, self.nhid, self.nlayers = ntoken, ninp, nhid, nlayers
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnn = distiller.modules.DistillerLSTM(ninp, nhid, nlayers, dropout=dropout)
        self.decoder = nn.Linear(nhid, ntoken)
        if tie_weights:
            self.decoder.weight = self.encoder.weight

    def forward(self, x, h):
        y, h = self.rnn(self.encoder(x), h)
        return self.decoder(y), h

    def init_hidden(self, batch_size):
        return self.rnn.init_hidden(batch_size)


def test_quantize_lstm_notebook_calls(tmp_path):
    """quantize_lstm.ipynb's conversion, calibration and four PTQ tries, with its calls."""
    from compress.distiller.data_loggers import QuantCalibrationStatsCollector, collect_quant_stats
    from compress.distiller.quantization import LinearQuantMode, PostTrainLinearQuantizer

    torch.manual_seed(0)
    corpus = synthetic_corpus(seed=1, vocab_size=40, train_tokens=200, valid_tokens=200, test_tokens=100)
    eval_batch_size, sequence_len = 4, 10
    val_data = batchify(corpus.valid, eval_batch_size)
    ntokens = len(corpus.dictionary)
    rnn_model = RNNModel("LSTM", ntokens, 16, 16, 2, 0.65, True).eval()
    rnn_model.ntoken, rnn_model.ninp, rnn_model.tie_weights = ntokens, 16, True  # the attributes its model.py has
    with torch.no_grad():
        rnn_model.rnn.weight_ih_l0.mul_(200)  # gate pre-activations beyond the sigmoid's +-6: net-aware clipping shows

    def manual_model(pytorch_model_):
        model = DistillerRNNModel(nlayers=pytorch_model_.nlayers, ninp=pytorch_model_.ninp, nhid=pytorch_model_.nhid,
                                  ntoken=pytorch_model_.ntoken, tie_weights=pytorch_model_.tie_weights)
        model.eval()
        model.encoder.weight = nn.Parameter(pytorch_model_.encoder.weight.clone().detach())
        model.decoder.weight = nn.Parameter(pytorch_model_.decoder.weight.clone().detach())
        model.decoder.bias = nn.Parameter(pytorch_model_.decoder.bias.clone().detach())
        model.rnn = distiller.modules.DistillerLSTM.from_pytorch_impl(pytorch_model_.rnn)
        return model

    man_model = manual_model(rnn_model)
    data, _ = get_batch(val_data, 0, sequence_len)
    hidden = rnn_model.init_hidden(eval_batch_size)
    y_t, _ = rnn_model(data, hidden)
    y_p, _ = man_model(data, hidden)
    assert (y_t - y_p).abs().max().item() < 1e-4
    assert man_model.rnn.cells[0].fc_gate_x.weight.data_ptr() != rnn_model.rnn.weight_ih_l0.data_ptr()  # a copy

    def evaluate_on(model, data_source):
        return evaluate(model, data_source, sequence_len, eval_batch_size)

    distiller.utils.assign_layer_fq_names(man_model)
    collector = QuantCalibrationStatsCollector(man_model)
    assert collector.value() == {}
    stats_file = str(tmp_path / "acts_quantization_stats.yaml")

    def eval_for_stats(model):
        evaluate_on(man_model, val_data)

    stats = collect_quant_stats(man_model, eval_for_stats, save_dir=str(tmp_path))
    assert os.path.isfile(stats_file) and "b" in stats["rnn.cells.0.eltwiseadd_gate"]["output"]

    val_loss = evaluate_on(man_model, val_data)
    quantizer = PostTrainLinearQuantizer(deepcopy(man_model), model_activation_stats=stats_file)
    stats_before_prepare = deepcopy(quantizer.model_activation_stats)
    dummy_input = (torch.zeros(1, 1).to(dtype=torch.long), man_model.init_hidden(1))
    quantizer.prepare_model(dummy_input)
    before = stats_before_prepare["rnn.cells.0.eltwiseadd_gate"]["output"]
    after = quantizer.model_activation_stats["rnn.cells.0.eltwiseadd_gate"]["output"]
    assert before["max"] > 6 and after["max"] == 6.0 and after["min"] == max(before["min"], -6.0)
    assert type(quantizer.model.rnn.cells[0].fc_gate_x).__name__ == "QuantLinear"
    assert math.isfinite(evaluate_on(quantizer.model, val_data))

    quantizer = PostTrainLinearQuantizer(deepcopy(man_model), model_activation_stats=stats_file,
                                         mode=LinearQuantMode.ASYMMETRIC_SIGNED, per_channel_wts=True)
    quantizer.prepare_model(dummy_input)
    assert math.isfinite(evaluate_on(quantizer.model, val_data))

    overrides = distiller.utils.yaml_ordered_load(".*eltwise.*:\n    fp16: true\nencoder:\n    fp16: true\n"
                                                  "decoder:\n    fp16: true\n")
    quantizer = PostTrainLinearQuantizer(deepcopy(man_model), model_activation_stats=stats_file,
                                         mode=LinearQuantMode.ASYMMETRIC_SIGNED, overrides=overrides,
                                         per_channel_wts=True)
    quantizer.prepare_model(dummy_input)
    assert math.isfinite(evaluate_on(quantizer.model, val_data))

    quantizer = PostTrainLinearQuantizer(deepcopy(man_model), model_activation_stats=stats_file,
                                         mode=LinearQuantMode.ASYMMETRIC_SIGNED, per_channel_wts=True, clip_acts="AVG")
    quantizer.prepare_model(dummy_input)
    assert evaluate_on(quantizer.model, val_data) == pytest.approx(val_loss, rel=0.05)


def test_prepare_model_takes_distillers_positional_dummy_input():
    from compress.distiller.quantization import PostTrainLinearQuantizer

    model = nn.Sequential(nn.Embedding(10, 4), nn.LSTM(4, 4))
    quantizer = PostTrainLinearQuantizer(model)
    prepared = quantizer.prepare_model((torch.zeros(3, 1, dtype=torch.long),))
    assert type(prepared[1]).__name__ == "ModularLSTM" and quantizer.prepared


def test_python_logger_writes_through_logging_never_stdout(caplog, capsys):
    logger = logging.getLogger("test_distiller_shim")
    with caplog.at_level(logging.INFO, logger="test_distiller_shim"):
        distiller.log_weights_sparsity(nn.Linear(4, 4), 0, loggers=[PythonLogger(logger)])
        PythonLogger(logger).log_training_progress(("Performance/Validation/", {"Loss": 4.5}), 2, 10, 20, 1)
    assert "Total sparsity: 0.00" in caplog.text and "Epoch: [2][   10/   20]    Loss 4.500000" in caplog.text
    assert capsys.readouterr().out == ""


def test_zeros_mask_dict_is_a_read_only_view_that_finds_tied_names():
    torch.manual_seed(0)
    model = RNNModel("LSTM", 30, 8, 8, 1, tie_weights=True)
    scheduler = distiller.CompressionScheduler(model)
    keep = torch.rand(30, 8) > 0.5
    scheduler.masks.set_mask("encoder.weight", keep)
    view = scheduler.zeros_mask_dict
    assert view["decoder.weight"].mask.dtype == torch.float32 and torch.equal(view["decoder.weight"].mask, keep.float())
    assert view["rnn.weight_hh_l0"].mask is None and "decoder.weight" in view and "nope" not in view
    view["encoder.weight"].mask.zero_()          # a copy: the store's mask is unchanged
    assert torch.equal(scheduler.masks["encoder.weight"], keep)
    with pytest.raises(TypeError):
        view["encoder.weight"] = None
    with pytest.raises(KeyError, match="nope"):
        view["nope"]


def test_load_checkpoint_reads_a_file_distiller_wrote_with_its_optimizer(tmp_path):
    torch.manual_seed(0)
    model = RNNModel("LSTM", 30, 8, 8, 1, tie_weights=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.003)
    model(torch.zeros(3, 2, dtype=torch.long), model.init_hidden(2))[0].sum().backward()
    optimizer.step()
    mask = torch.ones(32, 8)
    mask[:4] = 0
    torch.save({"epoch": 6, "state_dict": model.state_dict(), "arch": "RNNModel",
                "optimizer_state_dict": optimizer.state_dict(), "optimizer_type": type(optimizer),
                "compression_sched": {"masks_dict": {"rnn.weight_hh_l0": mask}}, "extras": {}},
               tmp_path / "checkpoint.pth.tar")
    fresh = RNNModel("LSTM", 30, 8, 8, 1, tie_weights=True)
    _, scheduler, loaded_optimizer, start_epoch = apputils.load_checkpoint(fresh, str(tmp_path / "checkpoint.pth.tar"))
    assert start_epoch == 7 and type(loaded_optimizer) is torch.optim.Adam
    assert loaded_optimizer.param_groups[0]["lr"] == 0.003 and len(loaded_optimizer.state) == len(optimizer.state)
    assert torch.equal(scheduler.zeros_mask_dict["rnn.weight_hh_l0"].mask, mask)
    assert (fresh.rnn.weight_hh_l0[:4] == 0).all()


def test_tensorboard_logger_writes_main_pys_scalars_and_histograms(tmp_path):
    pytest.importorskip("tensorboard", reason="TensorBoardLogger needs the optional extra 'tensorboard'")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from compress.distiller.data_loggers import TensorBoardLogger

    model = nn.Sequential(nn.Linear(4, 4, bias=False))
    with torch.no_grad():
        model[0].weight[:2] = 0
    model(torch.ones(1, 4)).sum().backward()
    tflogger = TensorBoardLogger(str(tmp_path))
    tflogger.log_gradients = True
    stats = ("Performance/Training/", OrderedDict([("Loss", 4.0), ("Perplexity", math.exp(4.0))]))
    distiller.log_training_progress(stats, model.named_parameters(), 1, 5, 10, 5, [tflogger])
    distiller.log_weights_sparsity(model, 1, loggers=[tflogger])
    tflogger.log_training_progress(("Performance/Validation/", OrderedDict([("Loss", 3.5)])), 1, 0, total=1, freq=1)
    tflogger.close()
    events = EventAccumulator(str(tmp_path)).Reload()
    scalar = {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}
    assert scalar["Performance/Training/Loss"] == [(15, 4.0)] and scalar["Performance/Validation/Loss"] == [(1, 3.5)]
    assert scalar["sparsity/weights/0.weight"] == [(1, 50.0)] and scalar["sparsity-2D/weights/0.weight"] == [(1, 50.0)]
    assert {"0/weight", "0/weight/grad"} <= set(events.Tags()["histograms"])


def test_tensorboard_logger_without_the_extra_names_it(tmp_path, monkeypatch):
    from compress.distiller.data_loggers import TensorBoardLogger

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(CompressError, match=r"extra 'tensorboard' \(pip install 'compress\[tensorboard\]'\)"):
        TensorBoardLogger(str(tmp_path))


UNCOVERED = [
    ("SummaryGraph", lambda m: distiller.SummaryGraph(m, torch.zeros(1, 4)), "ONNX"),
    ("draw_model_to_file", lambda m: distiller.draw_model_to_file(None, "rnn.png"), "model_summary(model, 'modules')"),
    ("model_summary png", lambda m: distiller.model_summary(m, "png", "wikitext2"), "ONNX"),
    ("model_summary compute", lambda m: distiller.model_summary(m, "compute"), "sparsity_table"),
    ("weights_sparsity_summary", lambda m: distiller.weights_sparsity_summary(m), "sparsity_summary"),
    ("model_performance_summary", lambda m: distiller.model_performance_summary(m, None, 1), "MACs"),
    ("config_component_from_file_by_class",
     lambda m: distiller.config.config_component_from_file_by_class(m, "x.yaml", "PostTrainLinearQuantizer"),
     "components_from_file"),
    ("load_checkpoint without a model", lambda m: apputils.load_checkpoint(None, "x.pth.tar"), "build the model"),
    ("CompressionScheduler(zeros_mask_dict)", lambda m: distiller.CompressionScheduler(m, {}), "set_mask"),
    ("log_model_buffers", lambda m: PythonLogger(logging.getLogger()).log_model_buffers(m, ["x"], "", 0, 0, 1, 1),
     "named_buffers"),
]


@pytest.mark.parametrize("call, advice", [u[1:] for u in UNCOVERED], ids=[u[0] for u in UNCOVERED])
def test_what_is_not_covered_says_what_to_use_instead(call, advice):
    with pytest.raises(distiller.NotCoveredError, match="is not covered by compress.distiller") as info:
        call(nn.Sequential(nn.Linear(4, 4)))
    assert advice in str(info.value) and isinstance(info.value, (CompressError, NotImplementedError))


def test_a_name_neither_covered_nor_listed_points_to_the_docs():
    with pytest.raises(AttributeError, match="docs/distiller-compat.md"):
        distiller.thinning  # noqa: B018
    with pytest.raises(AttributeError, match="docs/distiller-compat.md"):
        distiller.quantization.QuantAwareTrainRangeLinearQuantizer  # noqa: B018
    with pytest.raises(ArgumentError, match="what: 'bogus' is not a summary"):
        distiller.model_summary(nn.Linear(2, 2), "bogus")
