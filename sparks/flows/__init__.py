"""The Prefect flows (post-train, nightly, analyze, evaluate-checkpoints, ablation-study,
compare) and their Dask fan-out (`cluster.py`). They only wire library calls into Prefect tasks;
the top-level `flows/` holds the deployments (`prefect.yaml`) and their entry points."""
