import json
import os
import signal

import pytest

from testbed.core.runlog import CsvLog, read_csv_rows, sigint_deferred, write_json_atomic


def test_csv_rows_are_on_disk_immediately_and_torn_tail_is_dropped(tmp_path):
    p = tmp_path / "log.csv"
    log = CsvLog(p, ["a", "b"])
    log.append({"a": 1, "b": 2.5})
    # readable by another process before close
    assert read_csv_rows(p) == [{"a": "1", "b": "2.5"}]
    log.close()
    with open(p, "a") as f:
        f.write("3,4")  # a torn last line (killed mid-write)
    assert len(read_csv_rows(p)) == 1
    log2 = CsvLog(p, ["a", "b"], resume=True)  # resume truncates the torn line, then appends
    log2.append({"a": 5, "b": None})
    log2.close()
    assert read_csv_rows(p) == [{"a": "1", "b": "2.5"}, {"a": "5", "b": ""}]


def test_csv_rejects_unknown_columns_and_mismatched_header(tmp_path):
    p = tmp_path / "log.csv"
    with CsvLog(p, ["a"]) as log:
        with pytest.raises(KeyError, match="zzz"):
            log.append({"zzz": 1})
    with pytest.raises(ValueError, match="log.csv"):
        CsvLog(p, ["x", "y"], resume=True)


def test_json_atomic_replaces_and_cleans_nan(tmp_path):
    p = tmp_path / "s.json"
    write_json_atomic(p, {"v": float("nan"), "w": [1.0, float("inf")]})
    assert json.loads(p.read_text()) == {"v": None, "w": [1.0, None]}
    write_json_atomic(p, {"v": 2})
    assert json.loads(p.read_text()) == {"v": 2}
    assert [f for f in os.listdir(tmp_path) if f.startswith(".")] == []


def test_ctrl_c_during_an_append_lands_after_the_row_is_in_file_and_list(tmp_path, monkeypatch):
    log = CsvLog(tmp_path / "r.csv", ["a"])
    write = CsvLog._write

    def interrupted_write(self, text):          # Ctrl-C arrives while the row is being written
        os.kill(os.getpid(), signal.SIGINT)
        write(self, text)

    monkeypatch.setattr(CsvLog, "_write", interrupted_write)
    kept: list = []
    with pytest.raises(KeyboardInterrupt):
        log.append({"a": 1}, keep=kept)
    log.close()
    assert kept == [{"a": 1}]
    assert read_csv_rows(tmp_path / "r.csv") == [{"a": "1"}]


def test_sigint_deferred_hands_the_signal_to_the_previous_handler():
    seen = []
    prev = signal.signal(signal.SIGINT, lambda signum, frame: seen.append(signum))
    try:
        with sigint_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            assert seen == []                   # held inside the block
        assert seen == [signal.SIGINT]
        with sigint_deferred():
            pass
        assert seen == [signal.SIGINT]          # nothing arrived: nothing delivered
    finally:
        signal.signal(signal.SIGINT, prev)
