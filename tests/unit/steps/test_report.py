import json
from pathlib import Path

from imganalyzer.catalog.manifests import Entry, write_manifest
from imganalyzer.catalog.store import Catalog
from imganalyzer.layout import Layout
from imganalyzer.steps.report import format_reports, job_shards, module_reports, write_time_plot

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def write_benchmark(path: Path, seconds: float, rss: str = "100.0") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + f"{seconds}\t0:00:01\t{rss}\t1\t1\t1\t0\t0\t50\t1\n")


def make_results(root: Path) -> Path:
    catalog = Catalog(Layout(root))
    for shard, count in [("000001-00000", 10), ("000001-00001", 30), ("000002-00000", 5)]:
        write_manifest(
            catalog.manifest_path(shard), [Entry(f"{shard}/{i}", 1, 1) for i in range(count)]
        )
    bench = root / "benchmarks"
    write_benchmark(bench / "decode/000001-00000.tsv", 2.0)
    write_benchmark(bench / "decode/000001-00001.tsv", 6.0, rss="300.5")
    write_benchmark(bench / "decode/000002-00000.tsv", 1.0, rss="NA")
    write_benchmark(bench / "embedding/000001-00000-00001.tsv", 4.0)
    return root


def test_model_job_ids_cover_their_shard_range() -> None:
    shards = ["000001-00000", "000001-00001", "000001-00002", "000002-00000"]
    assert job_shards("000001-00001", shards) == ["000001-00001"]
    assert job_shards("000001-00000-00001", shards) == ["000001-00000", "000001-00001"]


def test_reports_count_images_per_module_from_manifests(tmp_path: Path) -> None:
    reports = {r.module: r for r in module_reports(Layout(make_results(tmp_path)))}
    decode, embedding = reports["decode"], reports["embedding"]
    assert (decode.jobs, decode.images, decode.seconds) == (3, 45, 9.0)
    assert decode.images_per_s == 5.0 and decode.peak_rss_mb == 300.5
    assert decode.p50_job_s == 2.0
    assert (embedding.jobs, embedding.images, embedding.images_per_s) == (1, 40, 10.0)
    assert "decode" in format_reports(list(reports.values()))
    json.dumps([r.as_dict() for r in reports.values()])


def test_time_plot_is_an_svg_with_one_bar_per_module(tmp_path: Path) -> None:
    reports = module_reports(Layout(make_results(tmp_path)))
    write_time_plot(reports, tmp_path / "plot.svg")
    svg = (tmp_path / "plot.svg").read_text()
    assert svg.startswith("<svg") and svg.count("<rect") == 2
