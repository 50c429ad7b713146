"""Our HTML opened in a real browser: Debian's Chromium, headless, started by the test, with every host name
unresolvable (offline), so a page that needs a CDN fails here: the sweep report and the GX Data Docs.
`.ci/run` installs Chromium when it is missing."""

import re
import shutil
import subprocess

import optuna
import pytest

from tests.fixtures.data_docs import build_docs
from tunegate.sweep.plots import draw_study_report

# A real browser process: `make test` runs these, `make test-fast` does not.
pytestmark = pytest.mark.slow

# Every console message headless Chromium sees is logged on stderr as `INFO:CONSOLE:<line>] "<text>", source: ...`.
CONSOLE = re.compile(r":CONSOLE:\d+\] (.*)")


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail("chromium is not installed: apt-get install chromium (.ci/run installs it)")
    return found


def rendered(path) -> tuple[str, list[str]]:
    """(the DOM after scripts ran, the console messages) of a local HTML file, offline."""
    done = subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",  # CI runs as root
            "--disable-gpu",
            "--host-resolver-rules=MAP * ~NOTFOUND",  # no network: a CDN script would fail to load
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=10000",  # let plotly finish drawing before the DOM is dumped
            "--dump-dom",
            path.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, CONSOLE.findall(done.stderr)


def test_the_console_messages_of_a_page_are_caught(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text("<html><body><script>console.error('planted'); missingFunction();</script></body></html>")
    _, console = rendered(page)
    assert console[0].startswith('"planted"') and "missingFunction is not defined" in console[1]


def test_the_sweep_report_draws_its_three_plots_offline_with_no_console_errors(tmp_path):
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0))
    for _ in range(8):  # a real study, told values: no training needed to draw its report
        trial = study.ask()
        rank, rate = trial.suggest_categorical("lora_r", [4, 8, 16]), trial.suggest_float("learning_rate", 1e-4, 1e-2)
        study.tell(trial, rank / 16 - abs(rate - 2e-3) * 50)
    report = tmp_path / "sweep_report.html"
    drawn = draw_study_report(study, "browser-test", report)
    assert drawn == ["optimization_history", "param_importances", "contour_lora_r_learning_rate"]
    dom, console = rendered(report)
    assert console == []
    # Plotly marks a div `js-plotly-plot` once it has drawn into it, with one `main-svg` layer or more.
    assert len(re.findall(r'class="plotly-graph-div js-plotly-plot"', dom)) == 3
    assert dom.count('class="main-svg"') >= 3


def test_the_data_docs_index_and_a_validation_page_render_their_tables_offline_with_no_console_errors(tmp_path):
    site = build_docs(tmp_path / "gx")
    validation_page = next((site / "validations").rglob("*.html"))
    (index_dom, index_console), (page_dom, page_console) = rendered(site / "index.html"), rendered(validation_page)
    assert index_console == page_console == []
    # bootstrap-table (on jQuery) wraps each table it has drawn in `bootstrap-table bootstrap4`: the index draws
    # two (suites, validation runs) and lists the run with a link to its page; the validation page draws GX's
    # overview tables and one per column canonical_rows checks (6): 11.
    assert index_dom.count('class="bootstrap-table bootstrap4"') == 2
    assert validation_page.name in index_dom
    assert page_dom.count('class="bootstrap-table bootstrap4"') == 11


def test_a_data_docs_page_without_its_vendored_scripts_is_caught(tmp_path):
    site = build_docs(tmp_path / "gx")
    broken = site / "index-broken.html"
    broken.write_text((site / "index.html").read_text().replace("static/vendor/", "static/missing/"))
    dom, console = rendered(broken)
    assert any("$ is not defined" in line for line in console)
    assert 'class="bootstrap-table bootstrap4"' not in dom
