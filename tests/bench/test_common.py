from bench.common import markdown, target
from bench.training_throughput import throughput_targets


def test_results_table_marks_missed_targets():
    record = {
        "benchmark": "demo",
        "rows": [{"setup": "ours", "tokens_per_s": 6709.4, "stages": []}, {"setup": "trl", "tokens_per_s": 856.2}],
        "targets": [target("≥ 1.5× TRL", "7.84×", True), target("≤ 10%", "10.4%", False)],
        "notes": "",
    }
    assert markdown(record) == (
        "### demo\n\n| setup | tokens_per_s | stages |\n|---|---|---|\n"
        "| ours | 6,709 | none |\n| trl | 856 |  |\n\n"
        "| target | measured | met |\n|---|---|---|\n| ≥ 1.5× TRL | 7.84× | yes |\n| ≤ 10% | 10.4% | **no** |\n"
    )


def test_throughput_targets_compare_ours_with_each_baseline():
    def row(dataset, setup, rate, rss):
        return {"dataset": dataset, "setup": setup, "steady_real_tokens_per_s": rate, "peak_rss_mb": rss}

    rows = [row(d, "ours", 3000.0, 1000.0) for d in ("demo", "long_tailed")]
    rows += [row(d, "tutorial", 200.0, 1200.0) for d in ("demo", "long_tailed")]
    rows += [row(d, "trl", 2500.0, 900.0) for d in ("demo", "long_tailed")]
    rows += [row(d, "ours_packed", 2400.0, 1000.0) for d in ("demo", "long_tailed")]
    measured = [(t["target"], t["measured"], t["met"]) for t in throughput_targets(rows)][:4]
    assert measured == [
        ("demo: ≥ 15× the tutorial set-up", "15.0×", True),
        ("demo: ≥ 1.5× TRL defaults", "1.20×", False),
        ("demo: peak RSS ≤ TRL's", "1000 vs 900 MB", False),
        ("demo: on CPU, padded batches ≥ packed ones (packing off by default)", "packed 0.80× padded", True),
    ]
