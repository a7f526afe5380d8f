"""The classification benchmark's rows, goals and frontier, recomputed from its committed results files:
the typed rows must write back exactly the JSON they were read from and give the same goals."""

import json
from pathlib import Path

import pytest

from benchmarks.classification import Row, TeacherFigures, frontier, goals, markdown

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


@pytest.mark.parametrize("name", ["classification.json", "classification_quick.json"])
def test_rows_read_back_write_the_same_json_and_the_same_goals(name):
    result = json.loads((RESULTS / name).read_text())
    rows = [Row.from_json(row, row["measured_in"]) for row in result["rows"]]
    assert [row.to_json() for row in rows] == result["rows"]
    teacher = TeacherFigures(**result["teacher"])
    assert frontier(teacher, rows) == result["frontier"]
    assert goals(result["mode"], teacher, rows, result["annotation"]) == result["goals"]
    table = markdown(result, teacher, rows, [])
    assert all(f"| {row['name']} |" in table for row in result["rows"])


def test_a_row_without_family_reads_as_a_bilstm_row():
    row = Row.from_json({"name": "gold only", "seeds": 1, "accuracy_mean": 0.7, "accuracy_std": 0.0, "accuracy_per_seed": [0.7],
                         "macro_f1_mean": 0.7, "loyalty_mean": 0.8, "params": 10, "params_without_embeddings": 5, "compression": 2.0,
                         "latency_ms": {"batch_32": 1.0}, "training_seconds_mean": 3.0, "speedup_batch_32": 4.0}, "an earlier run (kept)")
    assert (row.family, row.distilled, row.speedups) == ("bilstm", False, {"batch_32": 4.0})


def test_the_transfer_scale_results_give_their_goals_choice_and_table_again():
    from benchmarks.transfer_scale import chosen_point, chosen_shape, goals as scale_goals, markdown as scale_markdown, variant_name

    result = json.loads((RESULTS / "transfer_scale.json").read_text())
    assert scale_goals(result) == result["goals"]
    best = max(result["embedding_search"], key=lambda r: r["dev_accuracy"])  # chosen on dev, never on test
    assert variant_name(best["init"], best["sif"]) == result["chosen_embeddings"]
    assert chosen_shape(result["distilled"]) == result["chosen_shape"]  # on dev too, among the shapes within 26x
    point = chosen_point(result)
    assert len(point) == result["seeds_at_chosen_point"] and {r["seed"] for r in point} == set(range(1, len(point) + 1))
    assert all(r["teacher_params"] / r["params"] >= 26 for r in point)
    first = [r for r in result["pooled"] if r["seed"] == 1 and r["teacher_params"] / r["params"] >= 26]
    assert max(first, key=lambda r: r["dev_accuracy"])["shape"] == result["pooled_shape"]  # the pooled width, on dev too
    assert {r["seed"] for r in result["pooled"] if r["shape"] == result["pooled_shape"]} == set(range(1, len(point) + 1))
    table = scale_markdown(result)
    assert all(f"| {s['system']} | {s['format']} |" in table for s in result["systems"])
    from xdistil.sweep import Row as SweepRow, frontier as sweep_frontier

    points = [SweepRow(f"{s['system']} ({s['format']})", s["format"], s["accuracy"], s["size_mb"], s["latency_ms"], "") for s in result["systems"]]
    assert [r.student for r in sweep_frontier(points, "batch_32")] == result["frontier"]


@pytest.mark.parametrize("name", ["budget_curve.json", "budget_curve_quick.json"])
def test_the_budget_curve_results_give_their_summary_choice_and_table_again(name):
    from benchmarks.budget_curve import best_strategy, markdown as budget_markdown, summary
    from xdistil.transfer.budget import budget_count

    result = json.loads((RESULTS / name).read_text())
    shares = sorted({p["share"] for p in result["points"] if p["strategy"] != "all"})
    assert summary(result["points"], shares) == result["curve"]
    assert best_strategy(result["curve"]) == result["best_strategy"]  # on dev, never on test
    for point in result["points"]:  # a budget never labels more than its share of the pool
        if point["strategy"] == "all":
            assert point["labeled"] == result["pool"]
        else:
            assert point["labeled"] <= budget_count(point["share"], result["pool"])
    seeds = {(p["strategy"], p["share"]): set() for p in result["points"]}
    for point in result["points"]:
        seeds[(point["strategy"], point["share"])].add(point["seed"])
    assert all(found == set(result["seeds"]) for found in seeds.values())
    assert "| random |" in budget_markdown(result)


def test_the_ensemble_results_give_their_gains_again():
    import statistics

    result = json.loads((RESULTS / "ensemble.json").read_text())
    assert len(result["members"]) >= 3
    best = max(result["members"], key=lambda m: m["accuracy"])
    assert best["seed"] == result["best_member_seed"]
    assert result["teacher_gain"] == pytest.approx(100 * (result["ensemble_teacher_accuracy"] - best["accuracy"]))
    means = {k: statistics.mean(r["test_accuracy"] for r in rows) for k, rows in result["students"].items()}
    assert result["student_gain"] == pytest.approx(100 * (means["ensemble"] - means["best member"]))
    assert all(len(rows) == 3 for rows in result["students"].values())
    if result.get("transformer_students"):
        t = result["transformer_students"]
        assert result["transformer_gain"] == pytest.approx(100 * (t["ensemble"]["test_accuracy"] - t["best member"]["test_accuracy"]))


def test_the_teacher_recipe_results_give_their_choice_gains_and_table_again():
    from benchmarks.teacher_recipe import LABELS, RECIPES, markdown, summary

    result = json.loads((RESULTS / "teacher_recipe.json").read_text())
    assert sorted((r["labels"], r["recipe"]) for r in result["rows"]) == sorted((n, k) for n in LABELS for k in RECIPES)
    for row in result["rows"]:
        assert len(row["students"]) == 3
        assert row["student_test_mean"] == pytest.approx(sum(s["test_accuracy"] for s in row["students"]) / 3)
        assert ("pairs_seconds" in row["teacher"]) == (row["recipe"] == "setfit")
    assert summary(result["rows"]) == result["summary"]
    assert markdown(result) == (RESULTS / "teacher_recipe.md").read_text()


def test_the_file_labeler_results_give_their_table_again():
    from benchmarks.file_labeler import CASES, markdown

    result = json.loads((RESULTS / "file_labeler.json").read_text())
    assert [c["transfer_duplicates"] for c in result["cases"]] == list(CASES.values())
    for case in result["cases"]:
        assert case["identical_weights"] == (case["rows_with_other_logits"] == 0 and "test_predictions_agree" not in case)
    assert markdown(result) == (RESULTS / "file_labeler.md").read_text()
