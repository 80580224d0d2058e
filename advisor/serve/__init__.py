"""Serving a saved plan: the HTTP API (`api`), the planner's batching policy online (`batcher`),
the pipeline replica (`replica`), the HTTP front (`ingress`), the Ray Serve application (`app`)
and the deployment files for Ray Serve and KubeRay (`manifests`). Only `app` and the replica's
pipeline need Ray or torch, and they import them inside their functions.
"""
