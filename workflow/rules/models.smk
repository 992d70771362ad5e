# The model modules, one rule each, all of one shape, from their registry entries
# (imganalyzer/runtime/registry.py: MODELS): a job runs one model module over a group of
# shards with one model load (scripts/model_job.py). Its inputs are what the module reads
# (manifests, tier stores, decode rows, other modules' job summaries); its params are its
# settings, so that changing them re-runs it; its resources are the entry's.
for spec in MODELS.values():

    rule:
        name:
            spec.module
        input:
            unpack(model_inputs(spec)),
        output:
            str(LAYOUT.job_summary(spec.module, "{job}")),
        log:
            str(LAYOUT.log(spec.module, "{job}")),
        benchmark:
            str(LAYOUT.benchmark(spec.module, "{job}"))
        conda:
            "../../envs/imganalyzer.yaml"
        threads: spec.threads
        resources:
            **model_resources(spec),
        params:
            **model_params(spec),
            results=results_folder,
            shards=job_shards,
            retry=retry_param(spec.module),  # a failed job is re-run, only it
            version=spec.version,
        script:
            "../../scripts/model_job.py"
