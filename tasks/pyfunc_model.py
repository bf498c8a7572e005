"""The logged pyfunc as code (MLflow "models from code"): MLflow stores this file with the model
and runs it at load time, instead of unpickling a Python object.

``tasks.tracking`` logs it with ``python_model=<this file>`` and the artifacts ``weights`` and
``item_map``; the recommender itself is ``tasks.pyfunc.TopKRecommender``.
"""

import mlflow

from tasks.pyfunc import TopKRecommender

mlflow.models.set_model(TopKRecommender())
