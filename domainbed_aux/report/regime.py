"""Is a recipe in the paper's regime? Convergence criteria checked from the runs' records.

The paper trains every run to a plateau (5,001 steps, ImageNet weights, probes fitted on
extracted features) and averages best-ID-validation checkpoints of runs that all reached
one basin. Weight averaging is only meaningful there: a soup of runs stopped far from
convergence averages members that travelled different distances. These criteria were fixed
before any table was looked at, and they are about convergence only, never about which
row of Table 1 wins (docs/report.md gives the reasons for each limit):

- ``foundation``: the pretraining run at a plateau on its own task: its ID-validation
  accuracy, averaged over the evaluations of its last quarter, is at most
  ``ACC_GAIN_LIMIT`` points above its average over the third quarter (a third more steps
  gained that little), and its training loss falls by at most ``LOSS_DROP_LIMIT`` from its
  third to its last quarter;
- ``probes``: every linear probe at a plateau by the same ID-validation test;
- ``loss``: every auxiliary and target run near convergence: training loss falls by at most
  ``LOSS_DROP_LIMIT`` from the third to the last quarter of the run;
- ``best_not_last``: at most ``LAST_BEST_SHARE`` of the auxiliary runs, and of the target
  runs, have their best ID-validation checkpoint at the last evaluation (a run still
  improving when it stops has it there);
- ``spread``: the members of each Table-1 cell (one family, test domain and trial) are
  within ``SPREAD_LIMIT`` points of each other in ID-validation accuracy.

Torch-free: it reads ``results.jsonl`` files only.
"""

import logging
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from domainbed.lib import run_dir as rd

log = logging.getLogger(__name__)

ACC_GAIN_LIMIT = 1.0    # points of ID-validation accuracy from the third to the last quarter
LOSS_DROP_LIMIT = 0.05  # nats of training loss from the third to the last quarter
LAST_BEST_SHARE = 0.5   # share of runs whose best checkpoint is their last evaluation
SPREAD_LIMIT = 5.0      # points of ID-validation accuracy between the members of a cell

LOSS_KEY = "loss"


@dataclass
class RunCurve:
    """What the criteria read from one run: its ID-validation accuracy (in points) and
    training loss at each evaluation, in step order."""

    run_dir: str
    steps: List[int]
    id_val: List[Optional[float]]
    loss: List[Optional[float]]
    n_steps: int
    args: Dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        a = self.args
        test = a.get("test_envs")
        return (f"{os.path.basename(self.run_dir.rstrip(os.sep))} ({a.get('algorithm')} "
                f"{a.get('dataset')} test_envs={test} hparams_seed={a.get('hparams_seed')} "
                f"trial={a.get('trial_seed')})")


def _id_val(record: dict, train_envs: Sequence[int]) -> Optional[float]:
    accs = [record.get(f"env{j}_out_acc") for j in train_envs]
    if not accs or any(not isinstance(a, (int, float)) for a in accs):
        return None
    return 100.0 * sum(accs) / len(accs)


def _n_envs(record: dict) -> int:
    n = 0
    while f"env{n}_out_acc" in record or f"env{n}_in_acc" in record:
        n += 1
    return n


def read_curve(run_dir: str) -> Optional[RunCurve]:
    """The curve of a run directory, or None when it has no record with ``args``."""
    records = [r for r in rd.read_records(run_dir)
               if isinstance(r.get("step"), int) and not r.get("final_average")]
    with_args = [r for r in records if isinstance(r.get("args"), dict)]
    if not with_args:
        return None
    args = with_args[-1]["args"]
    records.sort(key=lambda r: r["step"])
    test_envs = [t for t in (args.get("test_envs") or []) if t >= 0]
    train_envs = [i for i in range(_n_envs(records[-1])) if i not in test_envs]
    n_steps = args.get("steps") or records[-1]["step"] + 1
    loss = [r.get(LOSS_KEY) if isinstance(r.get(LOSS_KEY), (int, float)) else None
            for r in records]
    return RunCurve(run_dir, [r["step"] for r in records],
                    [_id_val(r, train_envs) for r in records], loss, int(n_steps), args)


def read_curves(folders: Iterable[str]) -> List[RunCurve]:
    """The curves of the finished runs under ``folders`` (missing folders give none)."""
    curves = []
    for top in folders:
        if not os.path.isdir(top):
            continue
        for path, has_done in rd.find_run_dirs(top, max_depth=None):
            curve = read_curve(path) if has_done else None
            if curve is not None:
                curves.append(curve)
    return curves


# ------------------------------------------------------------------- one run's measures

def _quarter_mean(curve: RunCurve, values: Sequence[Optional[float]], low: float,
                  high: float) -> Optional[float]:
    kept = [v for s, v in zip(curve.steps, values)
            if v is not None and low * curve.n_steps < s <= high * curve.n_steps]
    return sum(kept) / len(kept) if kept else None


def _quarter_change(curve: RunCurve, values: Sequence[Optional[float]]) -> Optional[float]:
    third = _quarter_mean(curve, values, 0.5, 0.75)
    last = _quarter_mean(curve, values, 0.75, 1.0)
    if third is None or last is None:
        return None
    return last - third


def acc_gain(curve: RunCurve) -> Optional[float]:
    """Points of ID-validation accuracy gained from the third to the last quarter of the run
    (the mean of its evaluations in each: a maximum over many evaluations of a curve that
    jitters would grow with the number of evaluations, not with training)."""
    return _quarter_change(curve, curve.id_val)


def loss_drop(curve: RunCurve) -> Optional[float]:
    """How much the training loss fell from the third to the last quarter of the run (mean of
    the records in each; a record's loss is the mean since the previous evaluation)."""
    change = _quarter_change(curve, curve.loss)
    return None if change is None else -change


def best_is_last(curve: RunCurve) -> Optional[bool]:
    """Whether the first record with the best ID-validation accuracy is the last record."""
    scored = [(a, i) for i, a in enumerate(curve.id_val) if a is not None]
    if not scored:
        return None
    best = max(a for a, _ in scored)
    first_best = min(i for a, i in scored if a == best)
    return first_best == len(curve.id_val) - 1


# --------------------------------------------------------------------------- criteria

@dataclass
class Criterion:
    """One criterion's verdict: ``ok`` None when nothing could be measured."""

    key: str
    title: str
    ok: Optional[bool]
    summary: str
    offenders: List[str] = field(default_factory=list)


def _fmt(value: float) -> str:
    return f"{value:+.2f}" if abs(value) < 0.995 else f"{value:+.1f}"


def _plateau(key: str, title: str, curves: Sequence[RunCurve], with_loss: bool,
             what: str) -> Criterion:
    if not curves:
        return Criterion(key, title, None, f"no finished {what} run found")
    offenders, gains, drops = [], [], []
    for curve in curves:
        gain = acc_gain(curve)
        drop = loss_drop(curve) if with_loss else None
        if gain is not None:
            gains.append(gain)
        if drop is not None:
            drops.append(drop)
        bad = []
        if gain is None:
            bad.append("no ID-validation score")
        elif gain > ACC_GAIN_LIMIT:
            bad.append(f"ID val {_fmt(gain)} points over its last quarter")
        if drop is not None and drop > LOSS_DROP_LIMIT:
            bad.append(f"training loss fell {drop:.3f} over its last quarter")
        if bad:
            offenders.append(f"{curve.label}: {'; '.join(bad)}")
    parts = [f"{len(curves)} {what} run{'s' if len(curves) != 1 else ''}"]
    if gains:
        parts.append(f"largest ID-val gain over the last quarter {_fmt(max(gains))} points "
                     f"(limit {ACC_GAIN_LIMIT:g})")
    if drops:
        parts.append(f"largest training-loss fall over the last quarter {max(drops):.3f} "
                     f"(limit {LOSS_DROP_LIMIT:g})")
    return Criterion(key, title, not offenders, "; ".join(parts), offenders)


def _loss(curves: Sequence[RunCurve]) -> Criterion:
    title = "auxiliary and target runs: training loss at a plateau"
    measured = [(c, loss_drop(c)) for c in curves]
    measured = [(c, d) for c, d in measured if d is not None]
    if not measured:
        return Criterion("loss", title, None, "no run with a training loss in its records")
    offenders = [f"{c.label}: fell {d:.3f} over its last quarter"
                 for c, d in measured if d > LOSS_DROP_LIMIT]
    drops = sorted(d for _, d in measured)
    return Criterion("loss", title, not offenders,
                     f"{len(measured)} runs; training-loss fall over the last quarter: median "
                     f"{drops[len(drops) // 2]:.3f}, largest {drops[-1]:.3f} (limit "
                     f"{LOSS_DROP_LIMIT:g}); {len(offenders)} above", offenders)


def _best_not_last(groups: Sequence[Tuple[str, Sequence[RunCurve]]]) -> Criterion:
    title = "best ID-validation checkpoint before the last evaluation in most runs"
    parts, offenders, ok, any_measured = [], [], True, False
    for what, curves in groups:
        flags = [(c, best_is_last(c)) for c in curves]
        flags = [(c, f) for c, f in flags if f is not None]
        if not flags:
            continue
        any_measured = True
        last = [c for c, f in flags if f]
        share = len(last) / len(flags)
        parts.append(f"{what}: {len(last)} of {len(flags)} at the last evaluation "
                     f"({100 * share:.0f}%)")
        if share > LAST_BEST_SHARE:
            ok = False
            offenders += [f"{c.label}: best at its last evaluation (step {c.steps[-1]})"
                          for c in last]
    if not any_measured:
        return Criterion("best_not_last", title, None, "no run with ID-validation scores")
    return Criterion("best_not_last", title, ok,
                     "; ".join(parts) + f" (limit: {100 * LAST_BEST_SHARE:.0f}%)", offenders)


def _spread(cells: Dict[str, List[Tuple[str, float]]]) -> Criterion:
    title = f"members of a cell within {SPREAD_LIMIT:g} points of ID validation"
    if not cells:
        return Criterion("spread", title, None, "no Table-1 cell with runs")
    spreads = {name: max(a for _, a in m) - min(a for _, a in m) for name, m in cells.items()}
    offenders = []
    for name, spread in sorted(spreads.items()):
        if spread > SPREAD_LIMIT:
            members = ", ".join(f"{label} {acc:.1f}" for label, acc in
                                sorted(cells[name], key=lambda m: -m[1]))
            offenders.append(f"{name}: spread {spread:.1f} points ({members})")
    worst = max(spreads, key=lambda n: spreads[n])
    return Criterion("spread", title, not offenders,
                     f"{len(cells)} cells; largest spread {spreads[worst]:.1f} points "
                     f"({worst}; limit {SPREAD_LIMIT:g})", offenders)


def member_cells(runs: Sequence[Any]) -> Dict[str, List[Tuple[str, float]]]:
    """Table-1 cells (family, dataset, test env, trial) -> [(run label, ID-val points)] of
    the weights each member contributes (``RunInfo.id_val_acc``)."""
    from domainbed_aux.report.registry import family_of
    cells: Dict[str, List[Tuple[str, float]]] = {}
    for run in runs:
        family = family_of(run)
        if family is None or len(run.test_envs) != 1:
            continue
        name = (f"{run.dataset} test_env={run.test_envs[0]} trial={run.trial_seed} "
                f"{family}{' robust' if run.robust else ''}")
        label = f"hparams_seed={run.args.get('hparams_seed')}"
        cells.setdefault(name, []).append((label, 100.0 * run.id_val_acc))
    return cells


@dataclass
class Regime:
    criteria: List[Criterion]
    counts: Dict[str, int]

    @property
    def ok(self) -> bool:
        return all(c.ok is not False for c in self.criteria)

    def failed(self) -> List[Criterion]:
        return [c for c in self.criteria if c.ok is False]


def check_regime(target_runs: Sequence[Any], foundation: Sequence[RunCurve] = (),
                 probes: Sequence[RunCurve] = (), aux: Sequence[RunCurve] = (),
                 with_stages: bool = False) -> Regime:
    """Every criterion over the runs of a report: ``target_runs`` are its ``RunInfo``s;
    ``foundation``, ``probes`` and ``aux`` the curves of the recipe's other stages
    (``with_stages``: their criteria are shown even when no run was found)."""
    targets = [read_curve(r.run_dir) for r in target_runs]
    targets = [c for c in targets if c is not None]
    criteria = []
    if with_stages or foundation:
        criteria.append(_plateau("foundation", "foundation at a plateau on its own task",
                                 foundation, True, "pretraining"))
    if with_stages or probes:
        criteria.append(_plateau("probes", "linear probes at a plateau", probes, False,
                                 "linear-probe"))
    criteria.append(_loss(list(aux) + targets))
    criteria.append(_best_not_last([("auxiliary runs", aux), ("target runs", targets)]))
    criteria.append(_spread(member_cells(target_runs)))
    counts = {"foundation": len(foundation), "probes": len(probes), "aux": len(aux),
              "target": len(targets)}
    return Regime(criteria, counts)


def render_regime(regime: Regime, markdown: bool = False) -> str:
    """The regime section as text (or Markdown): one line per criterion, then the runs that
    fail it."""
    head = ("Regime: are the runs near convergence, as in the paper? (criteria fixed in "
            "advance, about convergence only; see docs/report.md)")
    c = regime.counts
    lines = ["## Regime", "", head, ""] if markdown else ["", head]
    lines.append(("- " if markdown else "  ") + f"runs: {c['foundation']} pretraining, "
                 f"{c['probes']} linear probes, {c['aux']} auxiliary, {c['target']} target")
    for crit in regime.criteria:
        mark = {True: "ok", False: "FAILED", None: "not measured"}[crit.ok]
        lines.append(("- " if markdown else "  ") + f"[{mark}] {crit.title}: {crit.summary}")
        for offender in crit.offenders:
            lines.append(("  - " if markdown else "      ") + offender)
    if not regime.ok:
        lines.append(("" if markdown else "  ") + "WARNING: the runs above stop far from "
                     "convergence; averages of such runs are not the paper's regime (train "
                     "longer: more steps, or a probe budget of its own).")
    return "\n".join(lines) + "\n"


def regime_to_dict(regime: Regime) -> Dict[str, Any]:
    """The regime section as JSON: the limits, the run counts and each criterion."""
    return {"ok": regime.ok, "counts": dict(regime.counts),
            "limits": {"acc_gain_points": ACC_GAIN_LIMIT, "loss_drop_nats": LOSS_DROP_LIMIT,
                       "last_best_share": LAST_BEST_SHARE, "spread_points": SPREAD_LIMIT},
            "criteria": [{"key": c.key, "title": c.title, "ok": c.ok, "summary": c.summary,
                          "offenders": list(c.offenders)} for c in regime.criteria]}


def warn_regime(regime: Regime) -> None:
    """One warning per failed criterion, naming the runs."""
    for crit in regime.failed():
        names = "; ".join(crit.offenders[:5]) + (f"; and {len(crit.offenders) - 5} more"
                                                  if len(crit.offenders) > 5 else "")
        log.warning("regime: %s FAILED: %s (%s)", crit.title, crit.summary, names)
