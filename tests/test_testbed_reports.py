"""The test bed's shared report writer (testbed/reports.py), used by make bench-overload and
make bench-hostile."""

import json

from fleetvote.testbed.reports import run_folder, write_report


def test_a_benchmark_report_is_written_stamped_and_printed(tmp_path, capsys):
    out = run_folder(str(tmp_path / "run"), "demo")
    assert out.is_dir()
    rep = {"figure": 42}
    path = write_report(rep, out, "demo", lambda r: f"figure {r['figure']} in {r['json']}")
    saved = json.loads(path.read_text())
    assert path == out / "demo.json" and saved["figure"] == 42 and saved["json"] == str(path)
    assert saved["host"]["cpus"] >= 1 and saved["host"]["load_avg_1m"] >= 0 and saved["date"].startswith("20")
    assert capsys.readouterr().out.strip() == f"figure 42 in {path}"
    # a report that brings its own date keeps it
    rep2 = {"date": "2026-01-01T00:00:00+00:00"}
    write_report(rep2, out, "demo2", str)
    assert json.loads((out / "demo2.json").read_text())["date"] == "2026-01-01T00:00:00+00:00"
