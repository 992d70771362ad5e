# Per-module throughput from the jobs' benchmark files, as a table and a plot that
# `snakemake --report report.html` shows.
rule benchmark_report:
    input:
        module_targets,
    output:
        table=LAYOUT.report_table,
        plot=report(
            LAYOUT.report_plot,
            caption="../report/module_times.rst",
            category="Performance",
        ),
    log:
        LAYOUT.log("report", "benchmark_report"),
    benchmark:
        LAYOUT.benchmark("report", "benchmark_report")
    localrule: True
    conda:
        "../../envs/imganalyzer.yaml"
    params:
        results=results_folder,
    script:
        "../../scripts/report.py"
