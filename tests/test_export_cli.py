"""``python -m compress export``: a checkpoint to a sparse compress file or to ONNX, with clear errors."""
import textwrap

import pytest
import torch

import compress
from compress.cli import build_parser, main
from compress.export import load_sparse
from compress.quantization import export_model
from compress.reports.inspection import DEFAULT_TASK
from compress_models import RNNModel

TASK = textwrap.dedent('''
    """A task of the smallest kind: a word LM rebuilt from the flags in the checkpoint."""
    from compress_models import RNNModel


    class Task:
        def build_model(self, checkpoint):
            a = checkpoint["extra"]["args"]
            return RNNModel("LSTM", a["vocab"], a["emsize"], a["nhid"], a["nlayers"], 0.0, a["tied"])


    def make_task(data, device):
        return Task()
''')
ARGS = {"vocab": 40, "emsize": 12, "nhid": 12, "nlayers": 2, "tied": True}


@pytest.fixture
def checkpoint(tmp_path, monkeypatch):
    (tmp_path / "tiny_export_task.py").write_text(TASK)
    monkeypatch.syspath_prepend(str(tmp_path))
    torch.manual_seed(0)
    model = RNNModel("LSTM", 40, 12, 12, 2, 0.0, True).eval()
    with torch.no_grad():
        model.encoder.weight[:, 3:] = 0
    path = str(tmp_path / "lm.pt")
    compress.save_checkpoint(path, model, args=ARGS, epoch=3)
    return path, model


def export(*argv):
    out = []
    status = main(["export", *argv, "--task", "tiny_export_task:make_task"], out=out.append)
    return status, "\n".join(out)


def test_export_writes_a_sparse_int8_file_equal_to_the_export_in_memory(tmp_path, checkpoint):
    path, model = checkpoint
    out = str(tmp_path / "lm.int8.pt")
    status, report = export(path, "--format", "compress", "--precision", "int8", "--out", out)
    assert status == 0
    assert report.startswith(f"{out}: compress sparse int8") and "bitmask" in report
    back = load_sparse(out, RNNModel("LSTM", 40, 12, 12, 2, 0.0, True))
    x = torch.randint(0, 40, (5, 2))
    expected = export_model(model, "int8")
    with torch.no_grad():
        assert torch.equal(back(x, back.init_hidden(2))[0], expected(x, expected.init_hidden(2))[0])


def test_export_to_onnx_int8_has_quantized_lstms(tmp_path, checkpoint):
    pytest.importorskip("onnxruntime", reason="ONNX export needs the 'onnx' extra (pip install compress[onnx])")
    path, _ = checkpoint
    status, report = export(path, "--format", "onnx", "--precision", "int8", "--out", str(tmp_path / "lm.onnx"))
    assert status == 0 and "com.microsoft.DynamicQuantizeLSTM x2" in report


def test_a_checkpoint_the_task_cannot_rebuild_is_a_clear_error(tmp_path, checkpoint, capsys):
    _, model = checkpoint
    bare = str(tmp_path / "bare.pt")
    compress.save_checkpoint(bare, model)  # no flags in extra['args']
    assert export(bare, "--out", str(tmp_path / "x.pt"))[0] == 2
    assert f"{bare}: the task cannot rebuild its model (KeyError" in capsys.readouterr().err
    wrong = str(tmp_path / "wrong.pt")
    compress.save_checkpoint(wrong, model, args=dict(ARGS, nlayers=3))
    assert export(wrong, "--out", str(tmp_path / "x.pt"))[0] == 2
    assert f"{wrong}: does not fit the model the task built" in capsys.readouterr().err
    assert export(str(tmp_path / "missing.pt"), "--out", str(tmp_path / "x.pt"))[0] == 2
    assert "no such checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()


def test_onnx_has_no_fp16_and_the_default_task_is_inspects(tmp_path, checkpoint, capsys):
    path, _ = checkpoint
    assert export(path, "--format", "onnx", "--precision", "fp16", "--out", str(tmp_path / "x.onnx"))[0] == 2
    assert "--format onnx writes fp32, int8, not 'fp16'" in capsys.readouterr().err
    assert build_parser().parse_args(["export", path, "--out", "x"]).task == DEFAULT_TASK
