"""Scale out on Ray: `seedtree run --ray` and `seedtree serve --ray`.

    cluster.py    RayConfig (where, how many replicas, CPUs/GPUs each), connecting, checks that
                  fail in one line, and `load_replica`: what every replica does first (its
                  threads, its own model pair, a one-line error naming its node)
    ray_run.py    a dataset slice on N actors: dynamic hand-out, records appended as they arrive
                  (`search.results`), a lost replica's problem tried again elsewhere
    ray_serve.py  the OpenAI-compatible app (`server.create_app`) as N Ray Serve replicas

Ray is imported only inside these modules' functions: `import seedtree` and every other module
work without it (`pip install "seedtree[ray]"` adds it). A replica gets settings (model names,
dtypes, configs, the task and its examples), never model objects, and loads its own pair.
"""
