"""The input sweep: every number option of the commands, and every field of the files they read
(model cards, experiment configs, SigMF recordings), given bad values (NaN, infinities, huge
numbers, wrong signs, wrong types, null), drawn by hypothesis and from a fixed list. Each must be
refused with exit code 2 (or the module's own error type) and a message naming the option or
the file and key: never a traceback, a hang or a silently wrong run with exit code 0."""
import argparse
import json
import math

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import REPO, SAMPLES, run_cli

# every command that takes number options, with the other arguments it needs (never reached:
# the bad value is refused first)
COMMANDS = {
    ("eval",): ["--model", "jscc-v1", "--data", SAMPLES],
    ("loopback",): ["--images", SAMPLES],
    ("demo",): ["--images", SAMPLES],
    ("ota",): ["--config", REPO / "firmware_configs" / "loopback.yaml", "--images", SAMPLES],
    ("bench", "codec"): [],
    ("bench", "phy"): [],
    ("kb", "build"): ["--data", SAMPLES, "--out", "never-written.npz"],
    ("train", "pack"): ["--data", SAMPLES, "--out", "never-written-pack"],
    ("calibrate",): ["--config", REPO / "firmware_configs" / "pluto.yaml"],
    ("pluto-config",): ["--ip", "192.168.2.1"],
    # the agent commands (a bad number is refused before any broker is contacted)
    ("node",): ["--broker", "mqtt://127.0.0.1:1", "--id", "n1"],
    ("controller",): ["--broker", "mqtt://127.0.0.1:1"],
    ("intent", "submit"): ["never-read.yaml", "--broker", "mqtt://127.0.0.1:1"],
    ("intent", "cancel"): ["i1", "--broker", "mqtt://127.0.0.1:1"],
    ("intent", "list"): ["--broker", "mqtt://127.0.0.1:1"],
    ("status",): ["--broker", "mqtt://127.0.0.1:1"],
    ("broker", "init"): ["never-written-broker", "--nodes", "n1"],
}
TRAIN = {("train", "codec"): ["--data", "no-such-folder"], ("train", "akb"): ["--data", "no-such-folder"],
         ("train", "scheduler"): ["--akb", "no-such.pt", "--data", "no-such-folder"]}
# options that take comma-separated numbers: their range (lo, hi, lo excluded)
LIST_OPTIONS = {("eval",): {"--snr-db": (-50, 100, False)}, ("loopback",): {"--snr-db": (-50, 100, False)},
                ("demo",): {"--snr-db": (-50, 100, False), "--cbr": (0, 1, True)},
                ("ota",): {"--tx-gain-db": (-200, 200, False)}}
NASTY = ["nan", "inf", "-inf", "0", "-1", "1e308", "99999999999999999999999", "x", ""]


def _subparsers(parser):
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def _command_parser(words):
    from testbed.cli.main import build_parser

    p = build_parser()
    for w in words:
        p = _subparsers(p)[w]
    return p


def _train_bounds(dest: str) -> dict:
    from testbed.core.trainargs import FLOAT_RANGES, INT_RANGES

    if dest in INT_RANGES:
        lo, hi = INT_RANGES[dest]
        return {"lo": lo, "hi": hi, "lo_open": False, "hi_open": False, "integer": True}
    if dest in FLOAT_RANGES:
        lo, hi = FLOAT_RANGES[dest]
        return {"lo": lo, "hi": hi, "lo_open": dest.startswith("lr"), "hi_open": False, "integer": False}
    if dest.startswith("p_"):
        return {"lo": 0.0, "hi": 1.0, "lo_open": False, "hi_open": False, "integer": False}
    if dest == "ema":
        return {"lo": 0.0, "hi": 1.0, "lo_open": False, "hi_open": True, "integer": False}
    raise AssertionError(f"--{dest}: a number option of the trainers without a range in testbed.core.trainargs")


def _number_options():
    """(command words, option, bounds) of every number option; fails on one that is not checked."""
    out = []
    for words in COMMANDS:
        for a in _command_parser(words)._actions:
            if a.choices or not a.option_strings:
                continue
            if getattr(a.type, "bounds", None):
                out.append((words, a.option_strings[-1], a.type.bounds))
            assert a.type not in (int, float), f"testbed {' '.join(words)} {a.option_strings[-1]}: an unchecked number"
    for words in TRAIN:
        for a in _command_parser(words)._actions:
            if a.type in (int, float) and not a.choices:
                out.append((words, a.option_strings[-1], _train_bounds(a.dest)))
    return out


OPTIONS = _number_options()


def _valid(text: str, b: dict) -> bool:
    from testbed.core.checks import is_valid

    try:
        v = int(text) if b["integer"] else float(text)
    except ValueError:
        return False
    return is_valid(v, b)


def _outside(b: dict):
    """Numbers outside ``b`` (as text), and the nasty ones."""
    parts = [st.sampled_from(NASTY)]
    lo, hi = b["lo"], b["hi"]
    if b["integer"]:
        parts.append(st.integers().map(lambda v: v * 10 ** 25))
        if lo is not None:
            parts.append(st.integers(max_value=lo - 1))
        if hi is not None:
            parts.append(st.integers(min_value=hi + 1))
    else:
        parts.append(st.floats(allow_nan=True, allow_infinity=True).filter(lambda v: not math.isfinite(v)))
        if lo is not None:
            parts.append(st.floats(max_value=lo, exclude_max=not b["lo_open"], allow_infinity=False))
        if hi is not None:
            parts.append(st.floats(min_value=hi, exclude_min=not b["hi_open"], allow_infinity=False))
    return st.one_of(parts).map(lambda v: v if isinstance(v, str) else repr(v))


def _refused(words, option, value, tmp_path):
    args = [*words, *(COMMANDS[words] if words in COMMANDS else TRAIN[words]), f"{option}={value}"]
    if words in TRAIN:
        args += ["--out", tmp_path / "train-run"]
    r = run_cli(*args, check=False, cwd=tmp_path, timeout=60)
    where = f"testbed {' '.join(words)} {option}={value!r}"
    assert r.exception is None and "Traceback" not in r.stderr, f"{where}: traceback\n{r.stderr[-2000:]}"
    assert r.returncode == 2, f"{where}: exit {r.returncode}, expected 2\n{r.stderr[-1000:]}"
    assert option in r.stderr, f"{where}: the message does not name {option}: {r.stderr[-500:]}"
    assert not any(tmp_path.iterdir()), f"{where}: left files behind: {list(tmp_path.iterdir())}"


def test_every_number_option_is_checked():
    """Each number option of the run commands has a checked type; each of the trainers a range."""
    names = {(w, o) for w, o, _ in OPTIONS}
    assert (("eval",), "--cbr") in names and (("loopback",), "--samp-rate") in names
    assert (("train", "scheduler"), "--gamma") in names and (("train", "akb"), "--p-no-kb") in names
    assert len(OPTIONS) > 60


@pytest.mark.slow
def test_fixed_nasty_values_are_refused_naming_the_option(tmp_path_factory):
    n = 0
    for words, option, b in OPTIONS:
        for v in NASTY:
            if not _valid(v, b):
                _refused(words, option, v, tmp_path_factory.mktemp("run"))
                n += 1
    for words, opts in LIST_OPTIONS.items():
        for option in opts:
            for v in NASTY + ["1,nan", "5,5", "0,,1e999"]:
                if v not in ("0", "-1") or option == "--cbr":
                    _refused(words, option, v, tmp_path_factory.mktemp("run"))
                    n += 1
    assert n > 400


@pytest.mark.slow
@settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_drawn_bad_numbers_are_refused_naming_the_option(data, tmp_path_factory):
    words, option, b = data.draw(st.sampled_from(OPTIONS), label="option")
    value = data.draw(_outside(b), label="value")
    if not _valid(value, b):
        _refused(words, option, value, tmp_path_factory.mktemp("run"))


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_drawn_bad_number_lists_are_refused(data, tmp_path_factory):
    words = data.draw(st.sampled_from(sorted(LIST_OPTIONS)))
    option = data.draw(st.sampled_from(sorted(LIST_OPTIONS[words])))
    lo, hi, lo_open = LIST_OPTIONS[words][option]
    good = st.floats(min_value=lo, max_value=hi, exclude_min=lo_open).map(repr)
    bad = st.one_of(st.sampled_from(["nan", "inf", "-inf", "1e400", "x"]),
                    st.floats(max_value=lo, exclude_max=not lo_open, allow_infinity=False).map(repr),
                    st.floats(min_value=hi, exclude_min=True, allow_infinity=False).map(repr))
    items = data.draw(st.lists(good, max_size=3)) + [data.draw(bad)]
    _refused(words, option, ",".join(data.draw(st.permutations(items))), tmp_path_factory.mktemp("run"))


def test_a_cbr_outside_the_model_names_the_option(tmp_path, tiny_model_dir):
    """--cbr 0.5 is a CBR, but not one of this model: still an error naming --cbr."""
    for words, args in ((("eval",), ["--model", tiny_model_dir, "--data", SAMPLES]),
                        (("bench", "codec"), ["--model", tiny_model_dir, "--size", "32x32", "--repeat", "1"])):
        r = run_cli(*words, *args, "--cbr", "0.5", check=False, cwd=tmp_path)
        assert r.returncode == 2 and "--cbr: CBR 0.5 is outside" in r.stderr, r.stderr[-500:]
        assert not any(tmp_path.iterdir())


def test_bench_size_is_checked(tmp_path):
    for v in ("0x32", "99999999999999999999x32", "32x-1", "32", "axb", "1e3x32"):
        _refused(("bench", "codec"), "--size", v, tmp_path)


# -- files ------------------------------------------------------------------------------------

def _paths(obj, prefix=()):
    """Every key path of a YAML/JSON document (mappings and list items), containers included."""
    out = []
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    for k, v in items:
        out.append(prefix + (k,))
        out += _paths(v, prefix + (k,))
    return out


def _set(doc, path, value):
    for k in path[:-1]:
        doc = doc[k]
    doc[path[-1]] = value


WRONG = st.one_of(st.none(), st.booleans(), st.integers(min_value=-10 ** 30, max_value=10 ** 30),
                  st.sampled_from([10 ** 400, -1, 0, "", "x" * 300, [None], {"file": 5}]),
                  st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
                  st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=4), st.integers(), max_size=2))


def _dump(doc) -> str:
    return yaml.safe_dump(doc, allow_unicode=True)


@pytest.fixture(scope="module")
def card_folder(tiny_model_dir, tmp_path_factory):
    """A copy of the tiny model whose card the tests rewrite."""
    import shutil

    d = tmp_path_factory.mktemp("card-sweep") / "model"
    shutil.copytree(tiny_model_dir, d)
    return d


@pytest.mark.slow
@settings(max_examples=100, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_card_fields_of_the_wrong_type_are_named(data, card_folder, tiny_model_dir):
    from testbed.core.card import ModelCardError
    from testbed.core.codecs import ModelError
    from testbed.zoo import open_codec

    doc = yaml.safe_load((tiny_model_dir / "model_card.yaml").read_text())
    path = data.draw(st.sampled_from(_paths(doc)), label="key")
    _set(doc, path, data.draw(WRONG, label="value"))
    card = card_folder / "model_card.yaml"
    card.write_text(_dump(doc))
    try:
        open_codec(card_folder)
    except (ModelError, ModelCardError) as e:
        assert str(card) in str(e) or str(card_folder) in str(e), str(e)


@pytest.mark.parametrize("name", ["loopback.yaml", "sigmf.yaml", "pluto.yaml", "usrp_b210.yaml"])
@settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_config_fields_of_the_wrong_type_are_named(name, data, tmp_path_factory):
    from testbed.core.configfile import ConfigError
    from testbed.link.configs import load_config

    doc = yaml.safe_load((REPO / "firmware_configs" / name).read_text())
    path = data.draw(st.sampled_from(_paths(doc) + [("channel",), ("ofdm", "extra")]), label="key")
    _set(doc, path, data.draw(WRONG, label="value"))
    p = tmp_path_factory.mktemp("cfg") / name
    p.write_text(_dump(doc))
    try:
        load_config(p)
    except ConfigError as e:
        assert str(p) in str(e), str(e)


def _recording(folder, model):
    """A minimal recording of `testbed ota` (settings only; the samples are zeros)."""
    from testbed.phy.config import OfdmConfig

    meta = {"global": {"core:datatype": "cf32_le", "core:sample_rate": 1e6, "core:version": "1.0.0",
                       "testbed:settings": {"model": str(model), "model_name": "tiny", "model_sha256": "ab" * 32,
                                            "cbr": 0.0078, "ofdm": OfdmConfig().to_dict(), "radio": {},
                                            "images": [{"image_id": 0, "file": "a.png", "path": "/x/a.png",
                                                        "sha256": "cd" * 32, "frames": 1, "cbr": 0.0078,
                                                        "tx_snr_db": 10.0}]}},
            "captures": [{"core:sample_start": 0, "core:frequency": 0.0}], "annotations": []}
    (folder / "rec.sigmf-data").write_bytes(bytes(8 * 64))
    return meta


@settings(max_examples=120, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_recording_fields_of_the_wrong_type_are_named(data, tmp_path_factory, tiny_model_dir):
    from testbed.core.sigmf_io import Recording, RecordingError

    d = tmp_path_factory.mktemp("rec")
    meta = _recording(d, tiny_model_dir)
    path = data.draw(st.sampled_from(_paths(meta)), label="key")
    _set(meta, path, data.draw(WRONG, label="value"))
    (d / "rec.sigmf-meta").write_text(json.dumps(meta, default=str))
    try:
        Recording(d / "rec.sigmf-meta").replay_settings()
    except RecordingError as e:
        assert "rec.sigmf-" in str(e), str(e)


@pytest.mark.slow
def test_unreadable_cards_and_configs_are_named(tmp_path, tiny_model_dir):
    """UTF-16 (with its byte-order mark) is read; a binary file, a folder or YAML of another shape
    is refused naming the file, on the command line with exit code 2."""
    import shutil

    from testbed.link.configs import load_config

    text = (REPO / "firmware_configs" / "loopback.yaml").read_text()
    (tmp_path / "u16.yaml").write_text(text, encoding="utf-16")
    assert load_config(tmp_path / "u16.yaml").kind == "loopback"
    m = tmp_path / "model"
    shutil.copytree(tiny_model_dir, m)
    card = m / "model_card.yaml"
    card_text = card.read_text()
    for content in (b"\x00\x01\x02\xff" * 64, b"\xff\xfe" + "\udc00".encode("utf-16-le", "surrogatepass"),
                    b"- a list\n- not a mapping\n", b"[" * 5000, b"codec: [jscc-v1]\n"):
        card.write_bytes(content)
        r = run_cli("eval", "--model", m, "--data", SAMPLES / "kodim15.png", "--snr-db", "10",
                    "--out", tmp_path / "run", check=False)
        assert r.returncode == 2 and str(card) in r.stderr and "Traceback" not in r.stderr, r.stderr[-800:]
        for cfg in (tmp_path / "c.yaml",):
            cfg.write_bytes(content)
            r = run_cli("ota", "--config", cfg, "--images", SAMPLES, "--out", tmp_path / "run", check=False)
            assert r.returncode == 2 and str(cfg) in r.stderr and "Traceback" not in r.stderr, r.stderr[-800:]
    card.write_text(card_text, encoding="utf-16")
    from testbed.zoo import open_codec

    assert open_codec(m).name == "tiny"
    (tmp_path / "dir.yaml").mkdir()
    r = run_cli("loopback", "--ofdm-config", tmp_path / "dir.yaml", check=False)
    assert r.returncode == 2 and "dir.yaml" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "run").exists()
