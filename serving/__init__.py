"""Serving: every trained model as an MLflow pyfunc, and what makes one request fast.

- ``serving.pyfunc``: ``TopKRecommender`` (a user's history of raw item ids in, the top-k raw ids
  out), its signature and its torch thread setting.
- ``serving/pyfunc_model.py`` (``PYFUNC_MODEL_FILE``): the "models from code" file that
  ``tasks.tracking.log_model_run`` logs with every model and MLflow runs when it loads one; it
  imports ``serving.pyfunc`` from the installed ``cinesync`` package (a requirement of every
  logged model), so ``mlflow models serve --env-manager local`` needs the project installed.
- ``serving.inference``: the traced single-row scorer of the families that opt in.
- ``serving/SERVING.md``: the request formats, threads and measured latency.
- ``serving/benchmarks/``: the latency benchmark (``latency.py``) and the one-family score A/B
  (``score_ab.py``), with their Markdown summaries; run from a checkout, neither packaged in the
  wheel nor copied into the image.

May import ``models``, ``pipeline`` and MLflow (the benchmarks also ``tasks``, to log a model
exactly as the pipeline does); ``models/`` knows nothing of this package. Nothing heavy is
imported here.
"""

from pathlib import Path

PYFUNC_MODEL_FILE = Path(__file__).resolve().parent / "pyfunc_model.py"
