"""PostTrainLinearQuantizer: configuration, overrides, schedules, preparation and simulation."""
import copy
import logging
import textwrap

import pytest
import torch
from torch import nn

import compress
from compress.errors import ArgumentError, ScheduleError
from compress.modules import ModularLSTM
from compress.quantization import (
    ClipMode,
    LinearQuantMode,
    PostTrainLinearQuantizer,
    collect_activation_stats,
    ptq_table,
)
from compress.quantization.wrappers import (
    FPWrapper,
    QuantActivation,
    QuantEltwise,
    QuantEmbedding,
    QuantLinear,
)

ASYM_S = LinearQuantMode.ASYMMETRIC_SIGNED


def batches(n=3, seq=6, bsz=2, vocab=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, vocab, (seq, bsz), generator=g) for _ in range(n)]


def run_lm(data):
    def run(model):
        hidden = model.init_hidden(data[0].size(1))
        for x in data:
            _, hidden = model(x, hidden)
    return run


def write(tmp_path, text):
    path = tmp_path / "q.yaml"
    path.write_text(textwrap.dedent(text))
    return path


# ------------------------------------------------------------------ configuration and overrides
def test_first_matching_override_wins_and_unset_keys_fall_back_to_globals(tiny_lm):
    q = PostTrainLinearQuantizer(tiny_lm, bits_activations=8, clip_acts="AVG", overrides={
        r"rnn\.cells\.0\..*": {"bits_activations": 6},
        r"rnn\..*": {"bits_activations": 4, "clip_acts": "NONE"},
    })
    first = q.config_for("rnn.cells.0.act_i")
    assert (first.bits_activations, first.clip_acts, first.override) == (6, ClipMode.AVG, r"rnn\.cells\.0\..*")
    second = q.config_for("rnn.cells.1.act_i")
    assert (second.bits_activations, second.clip_acts) == (4, ClipMode.NONE)
    assert q.config_for("decoder") == q.defaults


def test_an_exact_name_beats_an_earlier_regex(tiny_lm):
    q = PostTrainLinearQuantizer(tiny_lm, overrides={".*": {"bits_activations": 4}, "decoder": {"fpq_module": 16}})
    assert q.config_for("decoder").fpq_module == 16
    assert q.config_for("encoder").bits_activations == 4


def test_patterns_match_whole_names_after_a_dataparallel_prefix(tiny_lm):
    q = PostTrainLinearQuantizer(tiny_lm, overrides={"encoder": {"bits_weights": 4}})
    assert q.config_for("module.encoder").bits_weights == 4
    assert q.config_for("encoder2").bits_weights == 8     # fullmatch, not a prefix match


def test_overrides_are_checked_against_the_names_after_rnn_conversion(tiny_lm):
    PostTrainLinearQuantizer(tiny_lm, overrides={r"rnn\.cells\.1\.eltwiseadd_gate": {"fp16": True}})
    assert isinstance(tiny_lm.rnn, nn.LSTM)               # construction changes nothing


@pytest.mark.parametrize("yaml_text, key, message", [
    ("mode: DIAGONAL", "quantizers.q.mode", "unknown quantization mode"),
    ("mode: {activations: sym, weights: upside_down}", "quantizers.q.mode.weights", "unknown quantization mode"),
    ("bits_activations: 1", "quantizers.q.bits_activations", "between 2 and 32"),
    ("bits_parameters: 0", "quantizers.q.bits_parameters", "between 2 and 32"),
    ("overrides: {'rnn\\.cell\\..*': {fp16: true}}", r"quantizers.q.overrides.rnn\.cell\..*", "matches no module"),
    ("overrides: {rnn: {fp16: true}}", "quantizers.q.overrides.rnn", "matches only containers"),
    ("overrides: {encoder: {bits_activations: 1}}", "quantizers.q.overrides.encoder.bits_activations", "between"),
    ("overrides: {encoder: {colour: red}}", "quantizers.q.overrides.encoder.colour", "unknown override key"),
    ("overrides: {encoder: {input_overrides: {}}}", "quantizers.q.overrides.encoder.input_overrides",
     "not supported"),
    ("clip_acts: N_STD", "quantizers.q.clip_n_stds", "needs clip_n_stds"),
    ("clip_acts: MEDIAN", "quantizers.q.clip_acts", "unknown clipping mode"),
    ("fpq_module: 8", "quantizers.q.fpq_module", "16, 32, 64"),
    ("model_activation_stats: /nonexistent/stats.yaml", "quantizers.q.model_activation_stats", "cannot read"),
])
def test_bad_configuration_is_a_schedule_error_naming_the_key(tmp_path, tiny_lm, yaml_text, key, message):
    path = write(tmp_path, "quantizers:\n  q:\n    class: PostTrainLinearQuantizer\n    " + yaml_text + "\n")
    with pytest.raises(ScheduleError) as e:
        compress.components_from_file(tiny_lm, path)
    assert e.value.key == key
    assert message in str(e.value)
    assert str(path) in str(e.value)


def test_bad_configuration_from_code_is_an_argument_error(tiny_lm):
    with pytest.raises(ArgumentError) as e:
        PostTrainLinearQuantizer(tiny_lm, bits_activations=1)
    assert e.value.key == "bits_activations"


def test_quantizer_is_built_from_a_schedule_with_distillers_keys(tmp_path, tiny_lm):
    path = write(tmp_path, """\
        quantizers:
          linear_quantizer:
            class: PostTrainLinearQuantizer
            bits_activations: 8
            bits_parameters: 8
            bits_accum: 32
            mode: {activations: ASYMMETRIC_SIGNED, weights: ASYMMETRIC_SIGNED}
            per_channel_wts: true
            clip_acts: AVG
            overrides:
              encoder: {fpq_module: 16}
              .*eltwise.*: {bits_activations: null, fp16: true}
        """)
    q = compress.components_from_file(tiny_lm, path)["quantizers"]["linear_quantizer"]
    assert isinstance(q, PostTrainLinearQuantizer) and q.model is tiny_lm
    assert q.defaults.mode == (ASYM_S, ASYM_S) and q.defaults.per_channel_wts
    assert q.config_for("rnn.cells.0.eltwisemult_hidden").fpq_module == 16


# ------------------------------------------------------------------ preparation
def test_prepare_converts_the_lstm_and_wraps_every_leaf(tiny_lm):
    q = PostTrainLinearQuantizer(tiny_lm)
    model = q.prepare_model(calibration=run_lm(batches()))
    assert isinstance(model.rnn, ModularLSTM)
    cell = model.rnn.cells[0]
    assert isinstance(model.encoder, QuantEmbedding) and isinstance(model.decoder, QuantLinear)
    assert isinstance(cell.fc_gate_x, QuantLinear) and isinstance(cell.eltwiseadd_gate, QuantEltwise)
    assert isinstance(cell.act_f, QuantActivation) and isinstance(model.drop, nn.Dropout)
    assert len(cell.eltwiseadd_gate.in_quants) == 2


def test_calibrating_inside_prepare_equals_passing_the_statistics(tiny_lm):
    data = batches()
    a = PostTrainLinearQuantizer(copy.deepcopy(tiny_lm), mode="asym_u", clip_acts="AVG")
    a.prepare_model(calibration=run_lm(data))
    modular = compress.modules.convert_to_modular(copy.deepcopy(tiny_lm))
    stats = collect_activation_stats(modular, run_lm(data), laplace=False)
    b = PostTrainLinearQuantizer(copy.deepcopy(tiny_lm), mode="asym_u", clip_acts="AVG", model_activation_stats=stats)
    b.prepare_model()
    x = batches(1, seed=5)[0]
    assert torch.equal(a.model(x, a.model.init_hidden(2))[0], b.model(x, b.model.init_hidden(2))[0])


def test_simulated_int8_stays_close_to_fp32_and_fp16_closer(tiny_lm):
    data = batches(4)
    x = batches(1, seed=9)[0]
    tiny_lm.eval()
    ref = tiny_lm(x, tiny_lm.init_hidden(2))[0]
    errors = {}
    for name, kwargs in {"int8": dict(mode="asym_s", per_channel_wts=True), "fp16": dict(fpq_module=16)}.items():
        q = PostTrainLinearQuantizer(copy.deepcopy(tiny_lm), **kwargs)
        model = q.prepare_model(calibration=run_lm(data))
        errors[name] = (model(x, model.init_hidden(2))[0] - ref).abs().max().item()
    assert 0 < errors["int8"] < 0.02 * ref.abs().max().item()
    assert 0 < errors["fp16"] < errors["int8"] / 10


def test_net_aware_clipping_limits_lstm_gate_preactivations_to_sigmoid_range(tiny_lm):
    with torch.no_grad():
        tiny_lm.rnn.weight_ih_l0.mul_(200)   # pre-activations far beyond ±6
    q = PostTrainLinearQuantizer(tiny_lm)
    q.prepare_model(calibration=run_lm(batches()))
    raw = q.activation_stats["rnn.cells.0.eltwiseadd_gate"]["output"]
    assert raw["max"] > 6 or raw["min"] < -6
    out_q = q.model.rnn.cells[0].eltwiseadd_gate.out_quant
    assert float(out_q.range_max) <= 6.0 and float(out_q.range_min) >= -6.0


def test_net_aware_clipping_survives_loading_the_state_into_a_prepared_quantizer(tiny_lm):
    with torch.no_grad():
        tiny_lm.rnn.weight_ih_l0.mul_(200)   # pre-activations far beyond ±6
    q = PostTrainLinearQuantizer(copy.deepcopy(tiny_lm))
    q.prepare_model(calibration=run_lm(batches()))
    other = PostTrainLinearQuantizer(copy.deepcopy(tiny_lm))
    other.prepare_model()                    # the gate's consumers are wrapped when the statistics arrive
    other.load_state_dict(q.state_dict())
    out_q = other.model.rnn.cells[0].eltwiseadd_gate.out_quant
    assert float(out_q.range_max) <= 6.0 and float(out_q.range_min) >= -6.0


def _shipped_schedule_against_plain_int8(model, schedule, name):
    """The quantizer ``name`` of ``schedules/SCHEDULE`` and per-tensor INT8, both calibrated on the same data, and
    their mean output errors against the float model."""
    import os

    from conftest import ROOT

    data = batches(n=4, seq=12)
    x = data[0]
    ref = model(x, model.init_hidden(2))[0]
    shipped = compress.components_from_file(copy.deepcopy(model), os.path.join(ROOT, "schedules", schedule))
    quantizers = {"shipped": shipped["quantizers"][name],
                  "int8": PostTrainLinearQuantizer(copy.deepcopy(model), mode="asym_s", per_channel_wts=True)}
    errors = {}
    for key, q in quantizers.items():
        prepared = q.prepare_model(calibration=run_lm(data))
        errors[key] = (prepared(x, prepared.init_hidden(2))[0] - ref).abs().mean().item()
    return quantizers["shipped"], errors


def _heavy_tailed_cell(model):
    with torch.no_grad():   # a forget gate saturated open and large candidate values: the cell state drifts far
        model.rnn.bias_ih_l1[16:32].fill_(8.0)
        model.rnn.weight_ih_l1[32:48].mul_(30)


def test_shipped_16_bit_cell_schedule_resolves_a_heavy_tailed_cell_state(tiny_lm):
    _heavy_tailed_cell(tiny_lm)
    cell16, errors = _shipped_schedule_against_plain_int8(tiny_lm, "ptq_int8_cell16_lstm.yaml", "int8_cell16")
    cells = cell16.model.rnn.cells[1]
    assert cells.eltwiseadd_cell.out_quant.bits == 16 and cells.eltwisemult_cell_forget.out_quant.bits == 16
    assert cells.eltwisemult_hidden.out_quant.bits == 8 and cells.act_f.out_quant.bits == 8
    assert errors["shipped"] < 0.5 * errors["int8"]


def test_shipped_per_unit_cell_schedule_keeps_every_tensor_int8_and_resolves_the_cell(tiny_lm):
    _heavy_tailed_cell(tiny_lm)
    with torch.no_grad():   # only the first four units drift: one range per tensor is too wide for the rest
        tiny_lm.rnn.weight_ih_l1[36:48].div_(30)
    per_unit, errors = _shipped_schedule_against_plain_int8(tiny_lm, "ptq_int8_cell_per_unit_lstm.yaml",
                                                            "int8_cell_per_unit")
    cell = per_unit.model.rnn.cells[1]
    for module in (cell.eltwiseadd_cell, cell.eltwisemult_cell_forget, cell.eltwisemult_cell_input):
        assert module.out_quant.bits == 8 and module.out_quant.per_channel
        assert module.out_quant.scale.shape == (16,)
        assert all(q.per_channel and q.scale.shape == (16,) for q in module.in_quants)
    assert not cell.eltwisemult_hidden.out_quant.per_channel
    # the drifting units get coarse grids of their own, the others keep fine ones
    scale = cell.eltwiseadd_cell.out_quant.scale
    assert scale.max() > 4 * scale.min()
    assert errors["shipped"] < 0.5 * errors["int8"]
    assert "acts" in next(line for line in per_unit.module_table().splitlines()
                          if "rnn.cells.1.eltwiseadd_cell" in line)


def test_per_channel_activation_scales_follow_each_channels_range(tiny_lm):
    data = batches()
    q = PostTrainLinearQuantizer(tiny_lm, mode="asym_u", overrides={r".*act_g": {"per_channel_acts": True}})
    q.prepare_model(calibration=run_lm(data))
    ch = q.activation_stats["rnn.cells.0.act_g"]["output"]["channels"]
    out_q = q.model.rnn.cells[0].act_g.out_quant
    lo, hi = torch.tensor(ch["min"]).clamp(max=0), torch.tensor(ch["max"]).clamp(min=0)
    assert torch.allclose(out_q.scale, (255 / (hi - lo)).float())
    x = torch.rand(3, 16) * (hi - lo).float() + lo.float()
    assert ((out_q(x) - x).abs() <= 0.5 / out_q.scale + 1e-6).all()   # half a step of its own channel


def test_per_channel_activations_refuse_modules_with_weights(tmp_path, tiny_lm):
    with pytest.raises(ArgumentError) as e:
        PostTrainLinearQuantizer(tiny_lm, overrides={r".*fc_gate_x": {"per_channel_acts": True}})
    assert e.value.key == r"overrides..*fc_gate_x.per_channel_acts" and "module with weights" in str(e.value)
    path = write(tmp_path, """\
        quantizers:
          q:
            class: PostTrainLinearQuantizer
            overrides: {decoder: {per_channel_acts: true}}
        """)
    with pytest.raises(ScheduleError) as e:
        compress.components_from_file(tiny_lm, path)
    assert e.value.key == "quantizers.q.overrides.decoder.per_channel_acts"
    # set globally it applies to the modules without weights, and the others keep per-tensor ranges
    q = PostTrainLinearQuantizer(copy.deepcopy(tiny_lm), per_channel_acts=True)
    q.prepare_model(calibration=run_lm(batches()))
    assert q.model.rnn.cells[0].act_h.out_quant.per_channel
    assert not q.model.decoder.out_quant.per_channel and not q.model.rnn.cells[0].fc_gate_x.in_quant.per_channel


def test_per_channel_activations_need_per_channel_statistics(tiny_lm):
    data = batches()
    plain = collect_activation_stats(compress.modules.convert_to_modular(copy.deepcopy(tiny_lm)), run_lm(data))
    q = PostTrainLinearQuantizer(tiny_lm, model_activation_stats=plain,
                                 overrides={r".*eltwiseadd_cell": {"per_channel_acts": True}})
    with pytest.raises(ArgumentError) as e:
        q.prepare_model()
    assert e.value.key == "per_channel_acts" and "rnn.cells.0.eltwiseadd_cell" in str(e.value)
    assert isinstance(q.model.rnn.cells[0].eltwiseadd_cell, compress.modules.EltwiseAdd)   # nothing replaced


def test_dynamic_per_channel_activations_use_each_channels_own_range():
    from compress.quantization.wrappers import ActQuantizer

    q = ActQuantizer(8, ASYM_S, ClipMode.NONE, per_channel=True)
    x = torch.stack([torch.linspace(-1, 1, 9), torch.linspace(-100, 100, 9)], dim=1)   # 9 samples, 2 channels
    y = q(x)
    assert torch.allclose(y[:, 0], x[:, 0], atol=1 / 255 + 1e-6)     # not the 200/255 step of one shared range
    assert (y[:, 1] - x[:, 1]).abs().max() <= 100 / 255 + 1e-4


def test_tied_weights_are_quantized_once_and_the_float_weight_is_kept(tiny_lm):
    before = tiny_lm.encoder.weight.detach().clone()
    q = PostTrainLinearQuantizer(tiny_lm, per_channel_wts=True)
    model = q.prepare_model(calibration=run_lm(batches()))
    assert model.decoder.weight is model.encoder.weight
    assert torch.equal(model.encoder.weight, before)      # Distiller overwrote weights in place, twice
    assert torch.equal(model.decoder.weight_q, model.encoder.weight_q)


def test_fp16_override_rounds_to_half_precision(tiny_lm):
    q = PostTrainLinearQuantizer(tiny_lm, overrides={"decoder": {"fpq_module": 16}})
    model = q.prepare_model(calibration=run_lm(batches()))
    assert isinstance(model.decoder, FPWrapper)
    y = model.decoder(torch.randn(3, 16))
    assert torch.equal(y, y.half().float())


def test_bits_null_keeps_a_module_float(tiny_lm):
    q = PostTrainLinearQuantizer(tiny_lm, overrides={"decoder": {"bits_activations": None, "bits_weights": None}})
    model = q.prepare_model(calibration=run_lm(batches()))
    assert type(model.decoder) is nn.Linear


def test_without_statistics_ranges_are_dynamic_with_a_warning(tiny_lm, caplog):
    q = PostTrainLinearQuantizer(tiny_lm)
    with caplog.at_level(logging.WARNING):
        model = q.prepare_model()
    assert "dynamic" in caplog.text
    assert model.decoder.out_quant.dynamic
    model(batches(1)[0], model.init_hidden(2))


def test_statistics_missing_a_module_are_refused(tiny_lm):
    q = PostTrainLinearQuantizer(tiny_lm, model_activation_stats={"encoder": {"output": {"min": -1, "max": 1}}})
    with pytest.raises(ArgumentError) as e:
        q.prepare_model()
    assert e.value.key == "model_activation_stats" and "rnn.cells.0" in str(e.value)
    assert isinstance(tiny_lm.decoder, nn.Linear)        # a failed prepare replaced nothing


def test_distillers_positional_dummy_input_is_an_error_that_says_where_it_goes(tiny_lm):
    q = PostTrainLinearQuantizer(tiny_lm)
    dummy_input = (torch.zeros(1, 1, dtype=torch.long), tiny_lm.init_hidden(1))
    with pytest.raises(ArgumentError, match=r"calibration: the model could not be called on calibration item 0 .*"
                                            r"prepare_model\(dummy_input=\.\.\.\)"):
        q.prepare_model(dummy_input)
    assert not q.prepared


def test_prepare_twice_and_training_mode_are_refused(tiny_lm):
    q = PostTrainLinearQuantizer(tiny_lm)
    model = q.prepare_model(calibration=run_lm(batches()))
    with pytest.raises(RuntimeError, match="already"):
        q.prepare_model()
    model.train()
    with pytest.raises(RuntimeError, match="eval mode"):
        model(batches(1)[0], model.init_hidden(2))


def test_quantized_weights_are_integers_on_the_weight_grid(tiny_lm):
    q = PostTrainLinearQuantizer(tiny_lm, bits_parameters=4, mode="sym", per_channel_wts=True)
    model = q.prepare_model(calibration=run_lm(batches()))
    ints = model.rnn.cells[0].fc_gate_h.int_weight()
    assert torch.equal(ints, ints.round()) and ints.min() >= -8 and ints.max() <= 7


# ------------------------------------------------------------------ policies, state and reports
def test_a_post_training_quantizer_in_a_training_policy_is_refused_and_changes_nothing(tmp_path, tiny_lm):
    path = write(tmp_path, """\
        quantizers:
          q: {class: PostTrainLinearQuantizer, bits_activations: null}
        policies:
          - quantizer: {instance_name: q}
            starting_epoch: 0
            ending_epoch: 1
        """)
    modules = [type(m) for m in tiny_lm.modules()]
    with pytest.raises(ScheduleError, match=r"policies\[0\]\.quantizer.*post-training.*components_from_file"):
        compress.file_config(tiny_lm, None, path)
    assert [type(m) for m in tiny_lm.modules()] == modules


class _TrainingAwareQuantizer:
    """A stand-in quantization-aware quantizer: records when the policy prepares and re-quantizes it."""

    training_aware = True

    def __init__(self, name, model):
        self.model, self.calls = model, []

    def prepare_model(self):
        self.calls.append("prepare")

    def quantize_params(self):
        self.calls.append("quantize")


def test_a_training_aware_quantizer_is_prepared_only_after_the_whole_schedule_loaded(tmp_path, tiny_lm):
    compress.register_quantizer(_TrainingAwareQuantizer, name="_TrainingAwareQuantizer")
    good = {"quantizers": {"q": {"class": "_TrainingAwareQuantizer"}},
            "policies": [{"quantizer": {"instance_name": "q"}, "starting_epoch": 0, "ending_epoch": 1}]}
    bad = dict(good, policies=good["policies"] + [{"pruner": {"instance_name": "nobody"}, "epochs": [0]}])
    with pytest.raises(ScheduleError):
        compress.dict_config(tiny_lm, None, bad)
    scheduler = compress.dict_config(tiny_lm, None, good)
    q = scheduler.components["quantizers"]["q"]
    assert q.calls == ["prepare", "quantize"]
    scheduler.on_minibatch_end(0, 0, 1)
    assert q.calls == ["prepare", "quantize", "quantize"]


def test_state_dict_round_trip_restores_the_statistics(tiny_lm):
    q = PostTrainLinearQuantizer(copy.deepcopy(tiny_lm))
    q.prepare_model(calibration=run_lm(batches()))
    state = q.state_dict()
    other = PostTrainLinearQuantizer(copy.deepcopy(tiny_lm))
    other.prepare_model()                         # dynamic until the state arrives
    other.load_state_dict(state)
    x = batches(1, seed=3)[0]
    assert torch.equal(q.model(x, q.model.init_hidden(2))[0], other.model(x, other.model.init_hidden(2))[0])


def test_module_table_lists_format_bits_mode_clipping_and_override(tiny_lm):
    q = PostTrainLinearQuantizer(tiny_lm, mode="asym_s", clip_acts="AVG", per_channel_wts=True,
                                 overrides={"encoder": {"fpq_module": 16}})
    q.prepare_model(calibration=run_lm(batches()))
    table = q.module_table()
    enc = next(line for line in table.splitlines() if "| encoder " in line)
    assert "FP16" in enc and "encoder" in enc.split("|")[-2]
    gate = next(line for line in table.splitlines() if "rnn.cells.1.fc_gate_h" in line)
    assert all(s in gate for s in ("INT8", "8/8/32", "asym_s/asym_s", "yes", "AVG"))
    act = next(line for line in table.splitlines() if "rnn.cells.1.act_g" in line)
    assert "8/-/-" in act and "asym_s/-" in act


def test_ptq_table_has_distillers_columns_and_the_change_against_fp32():
    table = ptq_table([
        {"precision": "FP32", "ppl": 100.0},
        {"precision": "Full INT8", "mode": "Asymmetric", "per_channel": True, "clipping": "Averaging",
         "ppl": 102.3},
    ])
    lines = table.splitlines()
    assert "INT8: Mode" in lines[0] and "FP16 Modules" in lines[0] and "vs FP32" in lines[0]
    assert "| Full INT8" in lines[3] and "Yes" in lines[3] and "+2.30%" in lines[3]
    with pytest.raises(ValueError, match="row 0"):
        ptq_table([{"ppl": 3.0}])


def test_a_user_model_with_a_gru_is_quantized_too():
    torch.manual_seed(0)
    model = nn.Sequential()
    model.gru = nn.GRU(4, 5, 2, bidirectional=True)
    q = PostTrainLinearQuantizer(model, overrides={r"gru\.cells_reverse\..*": {"fpq_module": 16}})
    q.prepare_model(calibration=[torch.randn(6, 2, 4) for _ in range(2)])
    assert isinstance(model.gru.cells[1].eltwiseadd_new_gate, QuantEltwise)
    assert isinstance(model.gru.cells_reverse[0].act_n, FPWrapper)
    y, _ = model(torch.randn(6, 2, 4))
    assert y.shape == (6, 2, 10)
