"""The logged pyfunc as code (MLflow "models from code"): MLflow stores this file with the model
and runs it at load time, instead of unpickling a Python object.

``tasks.tracking`` logs it (``serving.PYFUNC_MODEL_FILE``) with ``python_model=<this file>`` and
the artifacts ``weights`` and ``item_map``; the recommender itself is
``serving.pyfunc.TopKRecommender``, imported from the installed ``cinesync`` package (every logged
model requires it), not from a copy stored with the model.
"""

import mlflow

from serving.pyfunc import TopKRecommender

mlflow.models.set_model(TopKRecommender())
