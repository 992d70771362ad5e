# Per-module throughput from the jobs' benchmark files, as a table and a plot that
# `snakemake --report report.html` shows.
rule benchmark_report:
    input:
        module_targets(),
    output:
        table=results_path("report", "modules.json"),
        plot=report(
            results_path("report", "module_times.svg"),
            caption="../report/module_times.rst",
            category="Performance",
        ),
    log:
        results_path("logs", "report", "benchmark_report.log"),
    benchmark:
        results_path("benchmarks", "report", "benchmark_report.tsv")
    localrule: True
    conda:
        "../../envs/imganalyzer.yaml"
    params:
        results=lambda wildcards, output: str(Path(output.table).parent.parent),
    script:
        "../../scripts/report.py"
