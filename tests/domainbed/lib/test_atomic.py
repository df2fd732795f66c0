"""Atomic writes keep the umask's permissions (a shared sweep stays readable) and the
leftovers of killed writes are removed on the next start."""

import json
import os
import stat

import pytest

from domainbed.lib import atomic, run_dir


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_new_file_written_with_umask_022_is_mode_0644(tmp_path, umask_022):
    path = tmp_path / "done"
    atomic.atomic_write_text(str(path), "done\n")
    assert _mode(path) == 0o644
    assert atomic.current_umask() == 0o022


def test_another_umask_is_honoured_and_a_replaced_file_keeps_its_mode(tmp_path):
    old = os.umask(0o027)
    try:
        path = tmp_path / "report.txt"
        atomic.atomic_write_bytes(str(path), b"a")
        assert _mode(path) == 0o640
        os.chmod(path, 0o604)
        atomic.atomic_write_bytes(str(path), b"b")
        assert _mode(path) == 0o604 and path.read_bytes() == b"b"
    finally:
        os.umask(old)


def test_weights_and_run_files_of_a_training_run_are_readable_by_the_group(tmp_path, umask_022):
    from domainbed.lib.weights import save_weights
    import torch
    save_weights(str(tmp_path / "model.safetensors"), {"w": torch.ones(1)})
    assert _mode(tmp_path / "model.safetensors") == 0o644


def test_leftover_temporaries_are_removed_and_nothing_else(tmp_path):
    (tmp_path / ".tmp-results.jsonlab12").write_text("torn")
    (tmp_path / ".tmp-model.safetensorsx").write_text("torn")
    (tmp_path / "results.jsonl").write_text("{}\n")
    (tmp_path / ".tmp-dir").mkdir()
    removed = atomic.remove_stale_temporaries(str(tmp_path))
    assert sorted(removed) == [".tmp-model.safetensorsx", ".tmp-results.jsonlab12"]
    assert sorted(os.listdir(tmp_path)) == [".tmp-dir", "results.jsonl"]


def test_a_run_removes_the_temporaries_of_its_killed_writes_when_it_starts(tmp_path):
    from domainbed.scripts import train as train_script
    out = tmp_path / "run"
    out.mkdir()
    (out / ".tmp-checkpoint.safetensorsq1w2").write_bytes(b"\0" * 10)
    assert train_script.main(["--dataset", "Debug28", "--steps", "1", "--output_dir",
                              str(out), "--hparams",
                              json.dumps({"batch_size": 8, "backbone": "tiny_cnn"})]) == 0
    assert not [n for n in os.listdir(out) if n.startswith(".tmp-")]
    assert (out / run_dir.DONE).exists()
