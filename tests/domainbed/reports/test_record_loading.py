"""results.jsonl decoding: the fast decoder (orjson) gives the records json gives."""

import json
import math
import os

import pytest

from domainbed.lib import jsonl, reporting
from domainbed.reports.synthetic import make_record, write_run

BIG = 2 ** 70  # beyond 64 bits: orjson would make it a float


def write_lines(run_dir, lines, done=True):
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, "results.jsonl"), "wb") as f:
        f.write(lines)
    if done:
        open(os.path.join(run_dir, "done"), "w").close()


def load(root, decoder, monkeypatch):
    monkeypatch.setattr(jsonl, "_fast_loads", decoder)
    records, report = reporting.load_records_with_report(str(root))
    return list(records), report


@pytest.fixture(params=["fast", "json"])
def decoder(request):
    if request.param == "json":
        return json.loads
    import orjson  # an install requirement
    assert jsonl._json_decoder() is orjson.loads
    return orjson.loads


def test_special_lines_decode_as_json_decodes_them(tmp_path, monkeypatch, decoder):
    ok = json.dumps(make_record(step=0))
    lines = "\n".join([
        ok,
        '{"step": 100, "env0_in_acc": NaN, "args": {"seed": 1}}',   # json writes NaN
        "",                                                          # blank line
        '{"step": 200, "big": %d, "neg": -%d}' % (BIG, BIG),         # long integers
        '{"step": 300, "frac": 0.0012345678901234567}',              # a long fraction
        '{"step": 400, "name": "caf\\u00e9 \\ud800"}',                # lone surrogate
        '[1, 2]',                                                    # not an object
        '{"step": 500, "cut',                                        # truncated last line
    ]).encode() + b"\n"
    write_lines(tmp_path / "run", lines)
    records, report = load(tmp_path, decoder, monkeypatch)
    assert [r["step"] for r in records] == [0, 100, 200, 300, 400]
    assert math.isnan(records[1]["env0_in_acc"])
    assert records[2]["big"] == BIG and isinstance(records[2]["big"], int)
    assert records[2]["neg"] == -BIG and isinstance(records[2]["neg"], int)
    assert records[3]["frac"] == 0.0012345678901234567
    assert records[4]["name"] == "caf\u00e9 \ud800"
    assert records[0] == json.loads(ok)
    assert report.n_bad_lines == 2 and report.n_runs == 1


def test_invalid_utf8_is_replaced_as_before(tmp_path, monkeypatch, decoder):
    write_lines(tmp_path / "run", b'{"step": 0, "name": "a\xffb"}\n')
    records, _ = load(tmp_path, decoder, monkeypatch)
    assert records == [{"step": 0, "name": "a\ufffdb"}]


def test_fast_and_json_decoders_load_the_same_sweep(tmp_path, monkeypatch):
    for i in range(6):
        records = [make_record(test_envs=[i % 3], seed=i, step=s * 100, hparams_seed=i,
                               accs={e: (1 / (3 + i + e + s), 1 / (7 + e)) for e in range(3)})
                   for s in range(3)]
        write_run(str(tmp_path / f"run{i}"), records, done=i != 5)
    fast, fast_report = load(tmp_path, jsonl._json_decoder(), monkeypatch)
    slow, slow_report = load(tmp_path, json.loads, monkeypatch)
    assert fast == slow and len(fast) == 15
    assert (fast_report.n_runs, fast_report.n_skipped) == (slow_report.n_runs, 1) == (5, 1)


@pytest.mark.parametrize("text, expected", [
    (b'{"a": 1234567890123456789}', True),       # 19 digits
    (b'{"a": -12345678901234567890}', True),
    (b'{"a": 123456789012345678}', False),       # 18 digits fit
    (b'{"a": 0.00012345678901234567}', False),   # a fraction: orjson decodes it exactly
    (b'{"a": 0.1234567890123456789, "b": 12345678901234567890}', True),
    (b'{"a": "12345678901234567890"}', True),    # in a string: json for it, harmless
    (b'', False),
])
def test_long_integer_check(text, expected):
    assert jsonl._may_hold_a_long_integer(text) is expected


def test_sweep_accs_scores_each_group_once_per_cache():
    from domainbed.lib.query import Q
    from domainbed.model_selection import OracleSelectionMethod
    records = Q([make_record(test_envs=[t], seed=t, step=s) for t in (0, 1) for s in (0, 1)])
    grouped = reporting.get_grouped_records(records)
    calls = []

    class Counting(OracleSelectionMethod):
        @classmethod
        def sweep_acc(cls, group_records):
            calls.append(len(group_records))
            return super().sweep_acc(group_records)

    cache = {}
    first = reporting.sweep_accs(grouped, Counting, cache)
    assert reporting.sweep_accs(grouped, Counting, cache) == first == [0.5, 0.5]
    assert calls == [2, 2]
    reporting.sweep_accs(grouped, Counting)  # no cache: scored again
    assert calls == [2, 2, 2, 2]
