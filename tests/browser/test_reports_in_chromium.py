"""Our HTML opened in a real browser: Debian's Chromium, headless, started by the test, with every host name
unresolvable (offline), so a page that needs a CDN fails here. `.ci/run` installs Chromium when it is missing."""

import re
import shutil
import subprocess

import optuna
import pytest

from tasks.sweep import draw_study_report

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
