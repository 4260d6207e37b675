"""Output files: written whole or not at all; devices, FIFOs and symlinks written through; inputs never replaced."""
from __future__ import annotations

import os
import stat
import threading

import pytest
import yaml

from tilesim.arch import arch_to_dict, load_arch
from tilesim.arch.errors import InputError
from tilesim.cli.main import main
from tilesim.core.files import output_target, write_all, write_atomic


def test_a_regular_file_is_replaced_whole_and_no_temporary_file_stays(tmp_path):
    target = tmp_path / "r.json"
    target.write_text("old")
    write_atomic(target, "new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


def test_a_symlink_is_written_through_and_stays_a_link(tmp_path):
    real = tmp_path / "real.json"
    real.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    write_atomic(link, "new")
    assert link.is_symlink() and real.read_text() == "new"


def test_a_device_node_stays_a_device_node():
    if not os.path.exists("/dev/null"):
        pytest.skip("no /dev/null")
    write_atomic("/dev/null", "discarded")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_a_full_device_reports_the_error_and_stays():
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    with pytest.raises(OSError):
        write_atomic("/dev/full", "x" * 100_000)
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


def test_a_fifo_is_written_in_place(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()))
    reader.start()
    write_atomic(fifo, "through the pipe")
    reader.join(timeout=10)
    assert got == ["through the pipe"] and stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_outputs_of_one_command_appear_all_or_none(tmp_path):
    first = tmp_path / "trace.json"
    with pytest.raises(OSError):
        write_all([(first, "trace"), (tmp_path / "missing" / "r.json", "report")])
    assert list(tmp_path.iterdir()) == []                    # neither the first output nor a temporary file
    write_all([(first, "trace"), (tmp_path / "r.json", "report")])
    assert first.read_text() == "trace" and (tmp_path / "r.json").read_text() == "report"


def test_output_target_refuses_folders_missing_folders_and_inputs(tmp_path):
    source = tmp_path / "arch.yaml"
    source.write_text("x")
    with pytest.raises(InputError, match=r"^-o: '.*' is a directory"):
        output_target(tmp_path)
    with pytest.raises(InputError, match=r"^-o: directory '.*missing' does not exist"):
        output_target(tmp_path / "missing" / "r.json")
    with pytest.raises(InputError, match="is an input of this command"):
        output_target(source, inputs=(source,))
    link = tmp_path / "link.yaml"
    link.symlink_to(source)
    with pytest.raises(InputError, match="is an input of this command"):
        output_target(link, inputs=(str(source),), flag="--trace")
    assert output_target(tmp_path / "new.json", inputs=(source,)) == tmp_path / "new.json"


# The command line (issue 21 items 4, 8, 9): reproducers from the reliability audit.
def cli(*args: str) -> int:
    return main(list(args))


RUN = ("run", "-w", "gemm:32,32,32", "-a", "edge-npu", "-f", "json")


def test_cli_writes_through_dev_null_and_a_symlink(tmp_path, capsys):
    if os.path.exists("/dev/null"):
        assert cli(*RUN, "-o", "/dev/null") == 0
        assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    real = tmp_path / "real.json"
    real.write_text("")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    assert cli(*RUN, "-o", str(link)) == 0
    assert link.is_symlink() and real.read_text().startswith("{")


def test_cli_refuses_to_overwrite_its_input_or_a_folder(tmp_path, capsys):
    mapping = tmp_path / "my-arch.yaml"
    text = yaml.safe_dump(arch_to_dict(load_arch("edge-npu")))
    mapping.write_text(text)
    assert cli("run", "-w", "gemm:32,32,32", "-a", str(mapping), "-o", str(mapping)) == 2
    assert mapping.read_text() == text
    assert "is an input of this command" in capsys.readouterr().err
    assert cli(*RUN, "-o", str(tmp_path)) == 2
    assert capsys.readouterr().err.strip().endswith("is a directory; give a file name")


def test_cli_writes_no_trace_when_the_report_cannot_be_written(tmp_path, capsys):
    trace = tmp_path / "t.json"
    assert cli(*RUN, "--trace", str(trace), "-o", str(tmp_path / "missing" / "r.json")) == 2
    assert not trace.exists() and list(tmp_path.iterdir()) == []


def test_cli_full_disk_is_a_one_line_error(capsys):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    assert cli(*RUN, "-o", "/dev/full") == 2
    err = capsys.readouterr().err
    assert err.startswith("tilesim: error: -o: cannot write '/dev/full'") and err.count("\n") == 1
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


def test_cli_unknown_ops_free_simulates_a_model_with_an_exotic_op(tmp_path, capsys):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper  # noqa: PLC0415 (optional dependency)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])
    node = helper.make_node("Hardmax", ["x"], ["y"])                  # a standard op tilesim does not cost
    model = helper.make_model(helper.make_graph([node], "g", [x], [y]), opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "exotic.onnx"
    onnx.save(model, str(path))
    assert cli("run", "-w", str(path), "-a", "edge-npu", "-f", "json") == 2
    assert "Hardmax" in capsys.readouterr().err
    with pytest.warns(Warning, match="Hardmax"):
        assert cli("run", "-w", str(path), "-a", "edge-npu", "-f", "json", "--unknown-ops", "free") == 0
    assert '"cycles"' in capsys.readouterr().out
