"""Output files: written whole or not at all; devices, FIFOs and symlinks written through; inputs never replaced."""
from __future__ import annotations

import os
import stat
import threading

import pytest

from tilesim.arch.errors import InputError
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
