"""The budget chosen by convergence (snlib.study.pilot): the plateau rule on hand-made curves, the pilot's table
from records, and a study whose budget its pilot settles."""
from __future__ import annotations

import pandas as pd
import pytest

from snlib.presets import PAPER_RATES, get_preset
from snlib.records import RunRecord
from snlib.study import figures, pilot
from snlib.study import protocol as P


def _curve(values, step=100) -> pd.Series:
    return pd.Series(values, index=[step * (i + 1) for i in range(len(values))], dtype=float)


def test_a_curve_that_rises_then_stays_flat_plateaus_where_its_last_quarter_is_flat():
    curve = _curve([10, 30, 40, 45, 45.5, 45.8, 46, 45.9, 46, 46])
    # B=500: window [375, 500] = {400: 45, 500: 45.5} spans 0.5 and 45.5 >= 46 - 1
    assert pilot.plateau_iteration(curve, tolerance=1.0, tail=0.25) == 500
    assert pilot.plateau_iteration(curve, tolerance=0.15, tail=0.25) == 800


def test_an_early_flat_stretch_below_the_later_best_is_no_plateau():
    curve = _curve([20, 20.2, 20.1, 20.3, 30, 39, 41, 41.2, 41.1, 41])
    assert pilot.plateau_iteration(curve, tolerance=1.0, tail=0.25) == 900   # not 400: the best comes later


def test_a_curve_still_rising_at_the_end_has_not_plateaued():
    assert pilot.plateau_iteration(_curve([5, 10, 15, 20, 25, 30]), tolerance=1.0, tail=0.25) is None


def test_a_plateau_needs_two_points_in_its_window():
    # every point is within tolerance, but up to B=300 the window [0.75 B, B] holds one point only
    assert pilot.plateau_iteration(_curve([50, 50.5, 50.2, 50.4, 50.3]), tolerance=1.0, tail=0.25) == 400
    assert pilot.plateau_iteration(_curve([50, 50.5, 50.2]), tolerance=1.0, tail=0.25) is None


def _record(loss, seed, points, lr=3e-4, total=None) -> RunRecord:
    config = get_preset("smoke", iterations=total or points[-1][0], lr=lr, seed=seed).replace(recipe=loss)
    evaluations = [{"iteration": it, "rank1": v, "mAP": v} for it, v in points[:-1]]
    return RunRecord(config=config, dataset="synthetic", split="val", metrics={"rank1": points[-1][1],
                     "mAP": points[-1][1]}, evaluations=evaluations, history=[], wall_time_s=1.0)


def test_the_pilot_table_averages_seeds_and_the_budget_waits_for_the_slowest_recipe():
    def points(values):
        return [(100 * (i + 1), v) for i, v in enumerate(values)]

    fast = points([40, 50, 50.2, 50.1, 50.3, 50.2, 50.1, 50.2])
    records = [_record("sn", 0, fast), _record("sn", 1, [(i, v + 2) for i, v in fast]),
               _record("ce", 0, points([10, 20, 25, 28, 30, 31, 31.2, 31.1]), lr=1e-3),
               _record("triplet", 0, points([1, 5, 9, 13, 17, 21, 25, 29]))]
    table = pilot.pilot_table(records, "mAP", tolerance=1.0, tail=0.25).set_index("loss")
    assert table.loc["sn", ["plateau", "seeds", "plateaued"]].tolist() == [400, 2, True]
    assert table.loc["sn", "value at plateau"] == pytest.approx(51.1) and table.loc["sn", "best"] == 51.3
    assert table.loc["ce", ["plateau", "lr", "plateaued"]].tolist() == [600, 1e-3, True]
    assert table.loc["triplet", ["plateau", "plateaued"]].tolist() == [800, False]   # the pilot's length
    assert pilot.budget(table.reset_index()) == 800


def test_pilot_runs_train_at_the_literature_rate_without_decay():
    protocol = P.Protocol(pilot_iterations=4000, pilot_evaluations=20, pilot_warmup=100, overrides={"p": 4})
    fields = pilot.pilot_budget(protocol)
    assert (fields["iterations"], fields["eval_every_iterations"], fields["warmup_iterations"]) == (4000, 200, 100)
    assert fields["final_lr_factor"] == 1.0 and fields["p"] == 4
    assert pilot.pilot_rates(("sn", "bot")) == {"sn": PAPER_RATES["sn"][0], "bot": PAPER_RATES["bot"][0]}
    assert pilot.pilot_rates(("sn",), 3.0) == {"sn": 3 * PAPER_RATES["sn"][0]}
    with pytest.raises(KeyError, match="sep"):
        pilot.pilot_rates(("sn", "sep"))


def test_a_study_with_a_pilot_takes_its_budget_from_it(data_root, tmp_path, monkeypatch):
    from snlib.study import plans
    from snlib.study.study import open_study

    monkeypatch.setenv("SNLIB_CACHE", str(tmp_path / "cache"))
    study = open_study("smoke", data_root=data_root, output_dir=tmp_path / "out", height=32, width=16, p=4)
    monkeypatch.setattr(type(study), "records_root", property(lambda self: tmp_path / "records"))
    sizes = {"selection": ("sn", "ce"), "family": (), "lrs": (1e-3,), "edge_extensions": 0, "pilot_iterations": 6,
             "pilot_evaluations": 3, "pilot_warmup": 1, "pilot_seeds": (0,), "iterations": 999}
    settled = P.settle(study, plans.study_protocol(study, sizes))
    table = settled.pilot
    assert list(table["loss"]) == ["sn", "ce"] and set(table["plateau"]) <= {4, 6}
    assert settled.protocol.iterations == pilot.budget(table) != 999
    used = {r.config.iterations for r in P.selection_records(settled)}
    assert used == {settled.protocol.iterations}                            # the selection trains at that budget
    pilots = [r for r in P.pilot_records(settled, progress=False)]
    assert {(r.config.lr, r.config.final_lr_factor, r.config.iterations) for r in pilots if r.name == "sn"} == \
        {(PAPER_RATES["sn"][0], 1.0, 6)}
    forced = P.settle(open_study("smoke", data_root=data_root, output_dir=tmp_path / "out", height=32, width=16,
                                 p=4, iterations=5), plans.study_protocol(study, sizes), select=False)
    assert forced.pilot is None                                             # a forced budget runs no pilot
    shown, curves = P.pilot_report(settled)                                 # notebook 00: read, not trained
    assert shown.equals(table) and set(curves["loss"]) == {"sn", "ce"} and set(curves["iteration"]) == {2, 4, 6}
    assert figures.pilot_curves(curves, shown, settled.protocol.iterations).axes[0].lines
    empty, none = P.pilot_report(forced)
    assert empty.empty and none.empty and not figures.pilot_curves(none, empty, 5).axes[0].lines
